"""The package version: one place, read by the public API and written into every manifest."""

__version__ = "0.1.0"
