"""The version of chargen, in a module of its own so that any module can import it without
importing the package's public names (and so without an import-order exception)."""

__version__ = "0.1.0"
