"""`ragline compress` through the real entry point, on the tiny random LM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clitools import one_line_error, ragline

DOCS = [
    {
        "id": "lh",
        "title": "Brassmoor Lighthouse",
        "text": "The Brassmoor Lighthouse is 38 metres tall and was first lit in 1871.",
    },
    {
        "id": "ferry",
        "title": "Ferry",
        "text": "The ferry to Saltmere leaves twice a day from the north quay in summer.",
    },
    {
        "id": "market",
        "title": "Market",
        "text": "The island market sells fish, wool and honey every Saturday morning.",
    },
]


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


def test_compress_json_reports_kept_documents_and_rate(docs_file: Path, tiny_lm_dir: Path) -> None:
    proc = ragline(
        "compress", "--question", "How tall is the lighthouse?", "--documents", str(docs_file),
        "--rate", "0.5", "--model", str(tiny_lm_dir), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == "longllmlingua" and out["requested"] == 0.5
    assert abs(out["rate"] - 0.5) <= 0.1
    assert out["tokens_out"] == sum(d["tokens_out"] for d in out["documents"])
    kept = {d["id"] for d in out["documents"]}
    assert kept | set(out["dropped"]) == {"lh", "ferry", "market"}
    assert all(d["title"] for d in out["documents"])


def test_compress_plain_and_llmlingua_without_question(docs_file: Path, tiny_lm_dir: Path) -> None:
    proc = ragline(
        "compress", "--documents", str(docs_file), "--method", "llmlingua",
        "--target-tokens", "20", "--model", str(tiny_lm_dir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "kept " in proc.stdout and "tokens (rate" in proc.stdout


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--question", "q", "--documents", "missing.jsonl"], "no such file"),
        (["--question", "q", "--method", "lingua"], "--method"),
        (["--documents", "{docs}"], "non-empty question"),
        (
            ["--question", "q", "--documents", "{docs}", "--rate", "0.5", "--target-tokens", "9"],
            "exclude",
        ),
        (["--question", "q", "--documents", "{docs}", "--rate", "2"], "rate"),
    ],
)
def test_compress_bad_input_is_one_line(docs_file: Path, args: list[str], pattern: str) -> None:
    line = one_line_error(ragline("compress", *[a.format(docs=docs_file) for a in args]))
    assert pattern in line
