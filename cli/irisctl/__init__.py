"""irisctl: the operator's one tool for the IRIS backend."""

__version__ = "0.1.0"
