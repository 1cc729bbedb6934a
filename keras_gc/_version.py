"""The package's version, in a module of its own so that the package's own
modules and the build (`pyproject.toml`) read it without importing Keras."""

__version__ = "0.1.0"
