"""Where ragline keeps downloaded models and built indexes."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """`$RAGLINE_CACHE`, else `$XDG_CACHE_HOME/ragline`, else `~/.cache/ragline`, joined with `parts`."""
    root = os.environ.get("RAGLINE_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "ragline")
    return Path(root).expanduser().joinpath(*parts)
