"""The `ragline` command line."""

from ragline.cli.app import app, main

__all__ = ["app", "main"]
