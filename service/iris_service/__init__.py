"""IRIS backend: explains a source file's intent and its responsibility blocks."""

from iris_service._version import __version__

__all__ = ["__version__"]
