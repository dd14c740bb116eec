"""Volumes: persistent file storage for scripts."""

__version__ = "1.0.0"
