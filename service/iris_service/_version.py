# Rewritten by the release builder (irisctl.build) when a version is set at build time.
__version__ = "0.1.0"
