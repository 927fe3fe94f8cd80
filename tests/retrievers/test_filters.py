"""Metadata filters: validation, row matching, and BM25 and dense retrievers restricted by `where`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragline.errors import ConfigError, UsageError
from ragline.pipeline.pipeline import Pipeline
from ragline.retrievers.bm25 import BM25Retriever
from ragline.retrievers.dense import DenseRetriever
from ragline.retrievers.filters import matching_rows, validate_where
from ragline.types import Document, Query, RunState

ROWS = [
    Document("a", "", {"lang": "en", "year": 2020, "draft": False}),
    Document("b", "", {"lang": "de", "year": 2021, "draft": True}),
    Document("c", "", {"lang": "en", "year": 2021, "draft": True}),
    Document("d", "", {"lang": "fr", "year": 2022}),
    Document("e", "", {}),
]


def rows(where: dict[str, Any], docs: list[Document] = ROWS) -> list[int]:
    result = matching_rows(docs, where, {})
    assert result.dtype == np.int64
    return result.tolist()


def shelf(corpus: tuple[Document, ...], doc_id: str) -> str:
    return next(d.metadata["shelf"] for d in corpus if d.id == doc_id)


def run_ids(stage: Any, question: str, where: dict[str, Any] | None = None) -> list[str]:
    query = Query(question, metadata={"where": where} if where else {})
    return [d.id for d in stage.run(RunState(query)).documents]


@pytest.mark.parametrize(
    "where",
    [
        {"lang": "en"},
        {"year": 2021},
        {"score": 0.5},
        {"draft": True},
        {"lang": ["en", "de"]},
        {"year": [2020, 2021], "lang": "en", "draft": False},
        {},
    ],
)
def test_validate_where_accepts_scalars_and_lists_and_returns_a_copy(where: dict[str, Any]) -> None:
    checked = validate_where(where)
    assert checked == where and checked is not where


@pytest.mark.parametrize(
    "value", [{}, {"nested": "x"}, [], None, [None], ["en", {"x": 1}], [["en"]], ("en",)]
)
def test_validate_where_rejects_non_scalar_values_naming_the_key(value: Any) -> None:
    with pytest.raises(UsageError, match=r"where\.lang: expected a string, number, boolean"):
        validate_where({"year": 2020, "lang": value})


@pytest.mark.parametrize("where", [["lang", "en"], "lang=en", None])
def test_validate_where_rejects_a_non_mapping(where: Any) -> None:
    with pytest.raises(UsageError, match="where: expected a mapping"):
        validate_where(where)


def test_matching_rows_scalar_value() -> None:
    assert rows({"lang": "en"}) == [0, 2]


def test_matching_rows_every_key_must_match() -> None:
    assert rows({"lang": "en", "year": 2021}) == [2]
    assert rows({"lang": "de", "year": 2020}) == []


def test_matching_rows_list_means_any_of_sorted_and_unique() -> None:
    assert rows({"lang": ["fr", "en", "fr"]}) == [0, 2, 3]


def test_matching_rows_unknown_value_or_key_matches_nothing() -> None:
    assert rows({"lang": "es"}) == []
    assert rows({"colour": "red"}) == []
    assert rows({"lang": ["es", "en"]}) == [0, 2]


def test_matching_rows_bool_and_int_values() -> None:
    assert rows({"draft": True}) == [1, 2]
    assert rows({"draft": False}) == [0]
    assert rows({"year": 2022}) == [3]
    assert rows({"year": "2022"}) == []


def test_matching_rows_empty_filter_is_every_row() -> None:
    assert rows({}) == [0, 1, 2, 3, 4]


def test_matching_rows_keeps_one_inverted_map_per_key_in_the_cache() -> None:
    cache: dict[str, dict[Any, np.ndarray]] = {}
    matching_rows(ROWS, {"lang": "en"}, cache)
    matching_rows(ROWS, {"lang": "de", "year": 2020}, cache)

    assert sorted(cache) == ["lang", "year"]
    cache["lang"].clear()  # a stale map is trusted: nothing of "lang" matches any more
    assert matching_rows(ROWS, {"lang": "en"}, cache).tolist() == []


def test_matching_rows_does_not_confuse_true_with_one() -> None:
    docs = [Document("t", "", {"flag": True}), Document("i", "", {"flag": 1})]
    docs.append(Document("f", "", {"flag": 1.0}))

    assert rows({"flag": True}, docs) == [0]
    assert rows({"flag": 1}, docs) == [1, 2]


def test_bm25_config_where_returns_only_matching_documents(
    both_index: str, corpus: tuple[Document, ...]
) -> None:
    question = "park stadium patient savings"  # dogs, football, doctor, bank
    assert set(run_ids(BM25Retriever(index=both_index, top_k=10), question)) == {
        "dogs",
        "football",
        "doctor",
        "bank",
    }

    got = run_ids(BM25Retriever(index=both_index, top_k=10, where={"shelf": "office"}), question)

    assert sorted(got) == ["bank", "doctor"]
    assert all(shelf(corpus, i) == "office" for i in got)


def test_bm25_query_where_excludes_the_best_lexical_match(both_index: str) -> None:
    stage = BM25Retriever(index=both_index, top_k=3)
    assert run_ids(stage, "spaghetti water")[0] == "pasta"

    assert run_ids(stage, "spaghetti water", {"source_id": ["rain", "dogs"]}) == []
    assert run_ids(stage, "spaghetti park", {"source_id": ["rain", "dogs"]}) == ["dogs"]


@pytest.mark.parametrize(
    "dense", [{}, {"index": "hnsw"}, {"index": "ivf", "nlist": 2}], ids=["flat", "hnsw", "ivf"]
)
def test_dense_where_excludes_better_matches_elsewhere(
    make_index: Callable[..., str], dense: dict[str, Any]
) -> None:
    stage = DenseRetriever(index=make_index("dense", **dense), top_k=5, nprobe=2)
    assert run_ids(stage, "automobile maintenance")[0] == "cars"

    got = run_ids(stage, "automobile maintenance", {"shelf": "office"})

    assert sorted(got) == ["bank", "doctor", "laptop"]
    assert got[0] == "laptop"


def test_dense_query_where_narrows_the_configured_where(both_index: str) -> None:
    stage = DenseRetriever(index=both_index, top_k=10, where={"shelf": "home"})

    assert sorted(run_ids(stage, "puppy")) == ["cars", "dogs", "pasta", "piano"]
    assert sorted(run_ids(stage, "puppy", {"year": [2019, 2022]})) == ["cars", "piano"]
    assert sorted(run_ids(stage, "puppy", {"reviewed": True})) == ["cars", "pasta"]


def test_bm25_and_dense_search_merge_config_and_call_filters(both_index: str) -> None:
    for cls in (BM25Retriever, DenseRetriever):
        stage = cls(index=both_index, top_k=10, where={"shelf": "outdoors"})
        hits = stage.search("rain thunder stadium orbit", where={"reviewed": False})
        assert sorted(stage.index.documents[i].id for i, _ in hits) == ["football", "rain"]


def test_query_where_cannot_widen_the_configured_filter(both_index: str) -> None:
    stage = BM25Retriever(index=both_index, top_k=10, where={"shelf": "home"})
    assert run_ids(stage, "patient savings spaghetti") == ["pasta"]

    assert run_ids(stage, "patient savings spaghetti", {"shelf": "office"}) == []
    assert run_ids(stage, "patient savings spaghetti", {"shelf": ["office", "home"]}) == ["pasta"]


@pytest.mark.parametrize("cls", [BM25Retriever, DenseRetriever])
@pytest.mark.parametrize("where", [{"source_id": "nowhere"}, {"colour": "red"}])
def test_filter_matching_nothing_returns_no_documents(
    both_index: str, cls: Any, where: dict[str, Any]
) -> None:
    state = cls(index=both_index, top_k=3, where=where).run(RunState(Query("rain thunder")))

    assert state.documents == ()
    assert state.trace[-1].details["retrieved"] == 0


def test_invalid_where_in_keyword_config_names_the_key() -> None:
    with pytest.raises(UsageError, match=r"where\.shelf"):
        BM25Retriever(index="unused", where={"shelf": {"in": ["a"]}})


def test_invalid_where_in_yaml_is_a_config_error_with_path_and_line(
    tmp_path: Path, both_index: str
) -> None:
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text(
        f"stages:\n  - type: retriever.bm25\n    index: {both_index}\n"
        "    where:\n      shelf: []\n",
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as err:
        Pipeline.from_yaml(yaml_file)

    assert f"{yaml_file}:4: stages[0].where: " in str(err.value)
    assert "where.shelf: expected a string" in str(err.value)
