"""The package version, importable by core modules without importing the package root."""

__version__ = "0.1.0"
