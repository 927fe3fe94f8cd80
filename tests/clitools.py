"""Run the `ragline` command through its real entry point, for CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["one_line_error", "ragline"]


def ragline(*args: str, cache: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `ragline` script (or `python -m ragline.cli`) and capture its output."""
    script = Path(sys.executable).with_name("ragline")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "ragline.cli"]
    full_env = {**os.environ, **env}
    if cache is not None:
        full_env["RAGLINE_CACHE"] = str(cache)
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full_env, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """Assert the command failed with `code`, one stderr line, no traceback and no stdout; return the line."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]
