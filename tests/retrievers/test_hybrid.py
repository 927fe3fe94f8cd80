"""`retriever.hybrid`: rank fusion on hand-made rankings, child configuration, and recall on a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ragline.errors import ConfigError
from ragline.pipeline.pipeline import Pipeline
from ragline.retrievers.bm25 import BM25Retriever
from ragline.retrievers.dense import DenseRetriever
from ragline.retrievers.hybrid import (
    HybridRetriever,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from ragline.types import Document, Query, RunState


def ranking(*ids: str, scores: list[float | None] | None = None) -> list[Document]:
    scores = scores or [None] * len(ids)
    return [Document(i, f"text of {i}", score=s) for i, s in zip(ids, scores, strict=True)]


def fused(docs: list[Document]) -> list[tuple[str, float | None]]:
    return [(d.id, d.score) for d in docs]


def approx(pairs: list[tuple[str, float]]) -> list[tuple[str, Any]]:
    return [(i, pytest.approx(s, rel=1e-12)) for i, s in pairs]


def run(stage: Any, question: str) -> RunState:
    return stage.run(RunState(Query(question)))


def test_rrf_sums_reciprocal_ranks() -> None:
    got = reciprocal_rank_fusion([ranking("a", "b", "c"), ranking("b", "d")])

    assert fused(got) == approx(
        [("b", 1 / 62 + 1 / 61), ("a", 1 / 61), ("d", 1 / 62), ("c", 1 / 63)]
    )


def test_rrf_k_sets_the_rank_offset() -> None:
    got = reciprocal_rank_fusion([ranking("a", "b"), ranking("b")], k=1)

    assert fused(got) == approx([("b", 1 / 3 + 1 / 2), ("a", 1 / 2)])


@pytest.mark.parametrize(
    ("weights", "expected"),
    [([2.0, 1.0], [("a", 2 / 61), ("b", 1 / 61)]), ([1.0, 3.0], [("b", 3 / 61), ("a", 1 / 61)])],
)
def test_rrf_weights_scale_each_ranking(
    weights: list[float], expected: list[tuple[str, float]]
) -> None:
    got = reciprocal_rank_fusion([ranking("a"), ranking("b")], weights=weights)

    assert fused(got) == approx(expected)


def test_rrf_ties_keep_first_seen_order() -> None:
    assert [d.id for d in reciprocal_rank_fusion([ranking("x", "y"), ranking("y", "x")])] == [
        "x",
        "y",
    ]
    assert [d.id for d in reciprocal_rank_fusion([ranking("y"), ranking("x")])] == ["y", "x"]


def test_rrf_keeps_the_first_document_object_and_handles_no_rankings() -> None:
    first = Document("a", "from bm25", {"title": "A"})
    got = reciprocal_rank_fusion([[first], [Document("a", "from dense")]])

    assert got[0].text == "from bm25" and got[0].title == "A"
    assert reciprocal_rank_fusion([]) == [] and reciprocal_rank_fusion([[], []]) == []


def test_weighted_fusion_min_max_normalises_each_ranking() -> None:
    one = ranking("a", "b", "c", scores=[10.0, 5.0, 0.0])  # 1, 0.5, 0
    two = ranking("c", "d", scores=[2.0, 1.0])  # 1, 0

    assert fused(weighted_score_fusion([one, two])) == approx(
        [("a", 1.0), ("c", 1.0), ("b", 0.5), ("d", 0.0)]
    )
    assert fused(weighted_score_fusion([one, two], weights=[1.0, 2.0])) == approx(
        [("c", 2.0), ("a", 1.0), ("b", 0.5), ("d", 0.0)]
    )


def test_weighted_fusion_equal_scores_and_missing_scores() -> None:
    flat = ranking("a", "b", scores=[3.0, 3.0])
    negative = ranking("c", "d", "e", scores=[-1.0, None, -3.0])  # None counts as 0

    assert fused(weighted_score_fusion([flat])) == [("a", 1.0), ("b", 1.0)]
    assert fused(weighted_score_fusion([negative])) == approx(
        [("d", 1.0), ("c", 2 / 3), ("e", 0.0)]
    )


def test_hybrid_over_bm25_and_dense_fuses_and_traces_each_child(both_index: str) -> None:
    state = run(HybridRetriever(index=both_index, top_k=3), "automobile maintenance")

    assert len(state.documents) == 3 and state.documents[0].id == "cars"
    assert state.documents[0].score == pytest.approx(1 / 61)
    (trace,) = state.trace
    assert trace.stage == "retriever.hybrid"
    assert trace.details["retrieved"] == 3 and trace.details["fusion"] == "rrf"
    children = trace.details["children"]
    assert [(c["stage"], c["retrieved"]) for c in children] == [
        ("retriever.bm25", 0),
        ("retriever.dense", 3),
    ]
    assert all(c["seconds"] >= 0 for c in children)


def test_children_inherit_index_candidates_and_where_unless_set() -> None:
    stage = HybridRetriever(
        index="shared",
        top_k=2,
        candidates=7,
        where={"shelf": "home"},
        retrievers=[
            {"type": "retriever.bm25"},
            {"type": "retriever.dense", "index": "own", "top_k": 3, "where": {"year": 2020}},
        ],
    )
    bm25, dense = stage.children

    assert isinstance(bm25, BM25Retriever) and isinstance(dense, DenseRetriever)
    assert (bm25.config.index, bm25.config.top_k, bm25.config.where) == (
        "shared",
        7,
        {"shelf": "home"},
    )
    assert (dense.config.index, dense.config.top_k, dense.config.where) == (
        "own",
        3,
        {"year": 2020},
    )


def test_weights_of_the_wrong_length_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="weights: expected 2 weights"):
        HybridRetriever(index="x", weights=[1.0])


@pytest.mark.parametrize(
    ("child", "message"),
    [
        ({"type": "retriever.nope"}, "unknown stage type 'retriever.nope'"),
        ({"index": "x"}, "expected a retriever type name, got None"),
        ({"type": "retriever.bm25", "top_k": "many"}, "retrievers.0.top_k"),
        ({"type": "retriever.bm25", "colour": "red"}, "retrievers.0.colour"),
    ],
)
def test_bad_child_is_a_config_error(child: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HybridRetriever(index="x", retrievers=[child])


YAML = """\
stages:
  - type: retriever.hybrid
    index: {index}
    retrievers:
      - type: retriever.bm25
      - type: {second}
        top_k: {top_k}
"""


def test_bad_child_parameter_in_yaml_names_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(YAML.format(index="idx", second="retriever.dense", top_k=0), encoding="utf-8")

    with pytest.raises(ConfigError) as err:
        Pipeline.from_yaml(path)

    assert f"{path}:7: stages[0].retrievers[1].top_k:" in str(err.value)
    assert "greater than or equal to 1" in str(err.value)


def test_unknown_child_type_in_yaml_names_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(YAML.format(index="idx", second="retriever.bm26", top_k=3), encoding="utf-8")

    with pytest.raises(ConfigError) as err:
        Pipeline.from_yaml(path)

    assert f"{path}:6: stages[0].retrievers[1].type:" in str(err.value)
    assert "unknown stage type 'retriever.bm26'" in str(err.value)


def test_config_round_trip_retrieves_the_same(both_index: str) -> None:
    stage = HybridRetriever(
        index=both_index, top_k=4, fusion="weighted", weights=[2.0, 1.0], candidates=6
    )
    again = HybridRetriever.from_config({k: v for k, v in stage.to_config().items() if k != "type"})

    assert again.to_config() == stage.to_config()
    for question in ("spaghetti water", "storm forecast"):
        assert fused(list(run(again, question).documents)) == fused(
            list(run(stage, question).documents)
        )


def test_weighted_fusion_over_the_index_tops_out_at_the_weight_sum(both_index: str) -> None:
    state = run(HybridRetriever(index=both_index, top_k=3, fusion="weighted"), "spaghetti water")

    assert state.documents[0].id == "pasta"
    assert state.documents[0].score == pytest.approx(2.0)


def test_query_where_reaches_every_child(both_index: str) -> None:
    query = Query("spaghetti water", metadata={"where": {"shelf": "office"}})

    state = HybridRetriever(index=both_index, top_k=10).run(RunState(query))

    assert sorted(d.id for d in state.documents) == ["bank", "doctor", "laptop"]


# One relevant document each: BM25 has no word of the first two, the embedder is pulled to
# another topic ("money" -> bank, "weather" -> rain) in the last two, where only a rare token helps.
RECALL = [
    ("automobile maintenance", "cars"),
    ("puppy", "dogs"),
    ("spaghetti water", "pasta"),
    ("borrowing money QZ-48213", "laptop"),
    ("weather report Brandtmoor", "piano"),
]


def hits_at_1(stage: Any) -> list[bool]:
    return [[d.id for d in run(stage, q).documents][:1] == [best] for q, best in RECALL]


def test_hybrid_recall_at_1_is_at_least_each_childs(both_index: str) -> None:
    bm25 = hits_at_1(BM25Retriever(index=both_index, top_k=1))
    dense = hits_at_1(DenseRetriever(index=both_index, top_k=1))
    hybrid = hits_at_1(HybridRetriever(index=both_index, top_k=1))

    assert bm25 == [False, False, True, True, True]
    assert dense == [True, True, True, False, False]
    assert hybrid == [True] * len(RECALL)


def test_trace_keeps_one_entry_per_child_of_the_same_type(both_index: str) -> None:
    stage = HybridRetriever(
        index=both_index,
        retrievers=[{"type": "retriever.bm25"}, {"type": "retriever.bm25", "top_k": 1}],
    )

    state = run(stage, "rain thunder stadium")

    children = state.trace[-1].details["children"]
    assert [(c["stage"], c["retrieved"]) for c in children] == [
        ("retriever.bm25", 2),
        ("retriever.bm25", 1),
    ]


def test_children_default_to_top_k_candidates() -> None:
    stage = HybridRetriever(index="idx", top_k=7)
    assert [c.config.top_k for c in stage.children] == [7, 7]  # type: ignore[attr-defined]
