"""The examples run as written, offline, with the packaged model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_integrations_are_not_imported_by_import_ragline() -> None:
    code = (
        "import sys, ragline, ragline.generators.openai, ragline.serve\n"
        "from ragline.cli import commands, serve\n"
        "heavy = ('langchain_core', 'starlette', 'uvicorn', 'httpx', 'openai', 'torch')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.model
def test_langchain_lcel_example_streams_an_answer_with_sources() -> None:
    pytest.importorskip("langchain_core")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "langchain_lcel.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text, _, sources = proc.stdout.partition("Sources:")
    assert "38 metres" in text
    assert "[1]* Brassmoor Lighthouse" in sources
