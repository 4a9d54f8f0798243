"""One Click command (or group) per module; each exposes ``command``."""
