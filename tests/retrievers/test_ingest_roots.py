"""Ingest never reads an index back in, keeps ids distinct across roots, and indexing refuses to clobber."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ragline.errors import UsageError
from ragline.retrievers import build_index, read_documents
from ragline.retrievers.bm25 import BM25Settings, _Tokenizer


def make(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_index_inside_the_corpus_is_not_read_back(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    make(docs / "a.md", "# A\n\nAlpha text.\n")
    build_index(read_documents([docs], exclude=[docs / "idx"]), docs / "idx", progress=False)
    again = [d.id for d in read_documents([docs])]
    assert again == ["a.md"]
    build_index(read_documents([docs]), docs / "idx", overwrite=True, progress=False)


def test_several_roots_keep_ids_distinct(tmp_path: Path) -> None:
    make(tmp_path / "d1" / "README.md", "one\n")
    make(tmp_path / "d2" / "README.md", "two\n")
    assert [d.id for d in read_documents([tmp_path / "d1", tmp_path / "d2"])] == [
        "d1/README.md",
        "d2/README.md",
    ]
    assert [d.id for d in read_documents([tmp_path / "d1"])] == ["README.md"]


def test_overwrite_refuses_a_directory_that_is_not_an_index(tmp_path: Path) -> None:
    precious = make(tmp_path / "precious" / "thesis.tex", "do not delete")
    with pytest.raises(
        UsageError, match="refusing to replace a directory that is not a ragline index"
    ):
        build_index(
            read_documents([make(tmp_path / "d.md", "text here\n")]),
            tmp_path / "precious",
            overwrite=True,
        )
    assert precious.read_text(encoding="utf-8") == "do not delete"


def test_a_file_as_target_is_refused(tmp_path: Path) -> None:
    target = make(tmp_path / "file.txt", "x")
    with pytest.raises(UsageError, match="is not a directory"):
        build_index(
            read_documents([make(tmp_path / "d.md", "text here\n")]), target, overwrite=True
        )


def test_index_directories_are_readable_by_others(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(read_documents([make(tmp_path / "d.md", "text here\n")]), out, progress=False)
    assert (
        stat.S_IMODE(out.stat().st_mode) & 0o055 == 0o055
        or stat.S_IMODE(out.stat().st_mode) == 0o755
    )


QUERIES = [
    "Who wrote 'The Lord of the Rings'?",
    "what's the population of São Paulo in 2010",
    "U.S. presidents & vice-presidents — list",
    "don't stop believin' journey 1981",
    "x_y z-1 3.14 αβγ",
    "the and of a",
]


def test_fast_query_tokenizer_equals_bm25s() -> None:
    tok = _Tokenizer(BM25Settings())
    plain = _Tokenizer(BM25Settings(stemmer=None, stopwords=None))
    for q in QUERIES:
        assert tok.query(q) == tok([q], ids=False)[0]
        assert plain.query(q) == plain([q], ids=False)[0]


def test_fast_query_tokenizer_equals_bm25s_on_real_questions() -> None:
    import gzip
    import json

    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "nq_questions.jsonl.gz"
    if not data.exists():
        pytest.skip(f"shared data not found at {data}")
    with gzip.open(data, "rt", encoding="utf-8") as f:
        questions = [json.loads(line)["question"] for line in f]
    tok = _Tokenizer(BM25Settings())
    assert [tok.query(q) for q in questions] == [tok([q], ids=False)[0] for q in questions]
