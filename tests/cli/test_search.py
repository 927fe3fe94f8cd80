"""`ragline index` and `ragline search` through the real entry point, on a six-document corpus."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clitools import one_line_error, ragline

DOCS = [
    ("cars", "Cars need petrol and regular oil changes to keep their engines running.", 2019),
    ("dogs", "Dogs are loyal pets that bark at strangers and love long walks in the park.", 2020),
    ("pasta", "Boil the spaghetti in salted water for ten minutes, then drain it.", 2021),
    ("doctor", "The doctor examined the patient and prescribed antibiotics.", 2020),
    ("football", "The striker scored twice and the fans cheered in the stadium.", 2020),
    ("bank", "The bank raised interest rates on savings accounts and mortgages.", 2021),
]


def search_json(*args: str) -> list[dict[str, Any]]:
    proc = ragline("search", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@dataclass(frozen=True)
class Built:
    both: str
    bm25: str
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """`DOCS` as JSONL indexed by the CLI with BM25 and dense, and with BM25 only."""
    root = tmp_path_factory.mktemp("search-cli")
    docs = root / "docs"
    docs.mkdir()
    rows = [{"id": i, "title": i.title(), "text": t, "year": y} for i, t, y in DOCS]
    (docs / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    both, bm25 = root / "both", root / "bm25"
    proc = ragline(
        "index", str(docs), "--out", str(both), "--method", "bm25", "--method", "dense", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert ragline("index", str(docs), "--out", str(bm25)).returncode == 0
    return Built(str(both), str(bm25), json.loads(proc.stdout))


def test_index_json_summary_lists_both_components(built: Built) -> None:
    assert built.summary == {
        "index": built.both,
        "documents": 6,
        "sources": 6,
        "components": ["bm25", "dense"],
    }


def test_search_json_is_a_ranked_list_fused_by_default(built: Built) -> None:
    hits = search_json("automobile maintenance", "--index", built.both)

    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert {"rank", "id", "title", "score", "text"} <= set(hits[0])
    assert (hits[0]["id"], hits[0]["title"]) == ("cars", "Cars")
    assert hits[0]["text"] == DOCS[0][1]
    # BM25 shares no word with the question, so the fused score is dense rank 1 alone.
    assert hits[0]["score"] == pytest.approx(1 / 61)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_method_dense_with_top_k(built: Built) -> None:
    hits = search_json("puppy", "--index", built.both, "--method", "dense", "--top-k", "2")

    assert len(hits) == 2 and hits[0]["id"] == "dogs"
    assert 0 < hits[1]["score"] < hits[0]["score"] <= 1


def test_method_bm25_matches_words_only(built: Built) -> None:
    assert search_json("automobile maintenance", "--index", built.both, "--method", "bm25") == []

    hits = search_json("spaghetti water", "--index", built.both, "--method", "bm25", "-k", "1")
    assert [h["id"] for h in hits] == ["pasta"] and hits[0]["score"] > 0


def test_where_restricts_to_matching_sources(built: Built) -> None:
    question = ["park stadium patient savings", "--index", built.both, "--method", "bm25"]
    assert {h["id"] for h in search_json(*question)} == {"dogs", "football", "doctor", "bank"}

    one = search_json(*question, "--where", "source_id=football")
    two = search_json(*question, "--where", "source_id=bank", "--where", "source_id=dogs")

    assert [h["id"] for h in one] == ["football"]
    assert sorted(h["id"] for h in two) == ["bank", "dogs"]


def test_where_matches_numeric_metadata(built: Built) -> None:
    hits = search_json("park stadium patient", "--index", built.bm25, "--where", "year=2020")

    assert sorted(h["id"] for h in hits) == ["doctor", "dogs", "football"]


@pytest.fixture
def questions(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    rows = [{"id": "q-pasta", "question": "spaghetti water"}, {"question": "stadium fans"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def check_batch_lines(text: str) -> None:
    lines = [json.loads(x) for x in text.splitlines()]
    assert [x["question"] for x in lines] == ["spaghetti water", "stadium fans"]
    assert lines[0]["id"] == "q-pasta" and isinstance(lines[1]["id"], str) and lines[1]["id"]
    assert [x["ids"][0] for x in lines] == ["pasta", "football"]
    for x in lines:
        assert set(x) == {"id", "question", "ids", "scores"}
        assert len(x["scores"]) == len(x["ids"]) and x["scores"][0] > 0


def test_questions_file_writes_one_json_line_per_question(built: Built, questions: Path) -> None:
    proc = ragline("search", "--questions", str(questions), "--index", built.bm25)

    assert proc.returncode == 0, proc.stderr
    check_batch_lines(proc.stdout)


def test_questions_with_out_writes_the_file_not_stdout(
    built: Built, questions: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hits.jsonl"

    proc = ragline("search", "-q", str(questions), "--index", built.bm25, "--out", str(out))

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    check_batch_lines(out.read_text(encoding="utf-8"))


def test_question_and_questions_file_together_is_a_usage_error(
    built: Built, questions: Path
) -> None:
    line = one_line_error(ragline("search", "q", "--questions", str(questions), "-i", built.bm25))
    assert "give a question or --questions FILE, not both" in line


def test_neither_question_nor_file_is_a_usage_error(built: Built) -> None:
    assert "give a question or --questions FILE" in one_line_error(
        ragline("search", "--index", built.bm25)
    )


@pytest.mark.parametrize("where", ["source_id", "=pasta"])
def test_malformed_where_is_a_usage_error(built: Built, where: str) -> None:
    line = one_line_error(ragline("search", "water", "--index", built.bm25, "--where", where))
    assert f"--where {where!r}: expected KEY=VALUE" in line


def test_hybrid_on_a_bm25_only_index_fuses_its_one_child(built: Built) -> None:
    bm25 = search_json("park stadium savings", "--index", built.bm25, "--method", "bm25")
    hybrid = search_json("park stadium savings", "--index", built.bm25, "--method", "hybrid")

    assert [h["id"] for h in hybrid] == [h["id"] for h in bm25] and len(bm25) == 3
    assert [h["score"] for h in hybrid] == pytest.approx([1 / 61, 1 / 62, 1 / 63])


def test_dense_on_a_bm25_only_index_names_the_method_to_build(built: Built) -> None:
    line = one_line_error(
        ragline("search", "water", "--index", built.bm25, "--method", "dense"), code=1
    )
    assert "no 'dense' component" in line and "--method dense" in line


def test_unknown_method_is_a_usage_error(built: Built) -> None:
    line = one_line_error(ragline("search", "water", "--index", built.bm25, "--method", "sparse"))
    assert "--method: expected auto, bm25, dense or hybrid, got 'sparse'" in line


def test_missing_index_is_a_usage_error(tmp_path: Path) -> None:
    line = one_line_error(ragline("search", "water", "--index", str(tmp_path / "nowhere")))
    assert f"{tmp_path / 'nowhere'}: index directory not found" in line


def test_plain_output_lists_rank_score_id_title_and_text(built: Built) -> None:
    proc = ragline("search", "spaghetti water", "--index", built.bm25, "-k", "1")

    assert proc.returncode == 0, proc.stderr
    head, text = proc.stdout.splitlines()
    assert head.startswith(" 1. ") and head.endswith("  pasta  Pasta")
    assert text.strip() == DOCS[2][1]
