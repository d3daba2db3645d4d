"""The package version, read from the installed distribution's metadata."""

from importlib import metadata

__version__ = metadata.version("wasmtime-gp")
