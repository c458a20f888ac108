"""confmon: connection monitor for hybrid conferences."""

__all__ = ["__version__"]

__version__ = "0.1.0"
