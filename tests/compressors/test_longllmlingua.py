"""The compressor stages end to end on a tiny random LM (fast) and on SmolLM2 (marked `model`)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragline.compressors import LLMLinguaCompressor, LongLLMLinguaCompressor
from ragline.errors import ConfigError, RaglineError
from ragline.types import Document, Query, RunState

WORDS = "the lighthouse keeper walked north along cliffs 1871 harbour ferry stone bell".split()


def _docs(n: int, words: int, seed: int = 0) -> list[Document]:
    rng = random.Random(seed)
    return [
        Document(
            id=f"d{i}",
            text=" ".join(rng.choice(WORDS) for _ in range(words)),
            metadata={"title": f"T{i}", "n": i},
            score=float(n - i),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny(tiny_lm_dir: Path) -> LongLLMLinguaCompressor:
    stage = LongLLMLinguaCompressor(model=str(tiny_lm_dir), rate=0.5)
    stage.warm_up()
    return stage


def _is_word_subsequence(out: str, src: str) -> bool:
    it = iter(src.split())
    return all(any(w == s for s in it) for w in out.split())


def test_rate_is_met_and_trace_is_complete(tiny: LongLLMLinguaCompressor) -> None:
    docs = _docs(12, 80)
    state = tiny.run(RunState(query=Query("Where did the keeper walk?"), documents=tuple(docs)))
    trace = state.trace[-1]
    assert trace.stage == "compressor.longllmlingua"
    assert trace.tokens_in and trace.tokens_out
    assert abs(trace.details["rate"] - 0.5) <= 0.05
    assert trace.tokens_out / trace.tokens_in == pytest.approx(trace.details["rate"], abs=1e-3)
    reports = trace.details["documents"]
    assert sorted(r["rank"] for r in reports) == list(range(12))
    assert all(0.0 <= r["keep_ratio"] <= 1.0 for r in reports)
    # Sorted output: ranks ascend.
    rank = {r["id"]: r["rank"] for r in reports}
    assert [rank[d.id] for d in state.documents] == sorted(rank[d.id] for d in state.documents)
    assert set(state.originals) <= {d.id for d in docs}


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 6),
    words=st.integers(1, 120),
    rate=st.floats(0.05, 1.0),
    seed=st.integers(0, 10**6),
    reorder=st.sampled_from(["original", "sort", "two_stage"]),
)
def test_output_is_a_subsequence_with_ids_and_metadata(
    tiny: LongLLMLinguaCompressor, n: int, words: int, rate: float, seed: int, reorder: str
) -> None:
    docs = _docs(n, words, seed)
    stage = LongLLMLinguaCompressor(
        tiny.config.model_copy(update={"rate": rate, "reorder": reorder})
    )
    stage._scorer = tiny._scorer  # share the loaded model across examples
    result = stage.compress("Which harbour has a bell?", docs)
    by_id = {d.id: d for d in docs}
    assert len({d.id for d in result.documents}) == len(result.documents)
    for d in result.documents:
        src = by_id[d.id]
        assert d.metadata == src.metadata and d.score == src.score
        assert _is_word_subsequence(d.text, src.text)
        assert d.text.strip()
    assert set(result.dropped) | {d.id for d in result.documents} == set(by_id)
    if reorder == "original":
        order = [int(d.id[1:]) for d in result.documents]
        assert order == sorted(order)


def test_numbers_are_never_cut(tiny: LongLLMLinguaCompressor) -> None:
    docs = [Document(id="a", text="It was built in 1871 and rebuilt in 1904 after the 12th storm.")]
    stage = LongLLMLinguaCompressor(tiny.config.model_copy(update={"rate": 0.4}))
    stage._scorer = tiny._scorer
    text = stage.compress("When was it built?", docs).documents[0].text
    for number in ["1871", "1904", "12th"]:
        assert number in text.split()


def test_empty_documents_are_dropped_and_reported(tiny: LongLLMLinguaCompressor) -> None:
    docs = [Document(id="e", text="   "), *_docs(3, 30)]
    state = tiny.run(RunState(query=Query("Where is the bell?"), documents=tuple(docs)))
    assert "e" in state.trace[-1].details["dropped"]
    assert "e" not in {d.id for d in state.documents}


def test_no_documents_passes_through(tiny: LongLLMLinguaCompressor) -> None:
    state = tiny.run(RunState(query=Query("Where is the bell?")))
    assert state.documents == () and state.trace[-1].tokens_in == 0


def test_empty_question_is_an_error_for_longllmlingua_only(
    tiny: LongLLMLinguaCompressor, tiny_lm_dir: Path
) -> None:
    with pytest.raises(RaglineError, match="question is empty"):
        tiny.compress("  ", _docs(2, 10))
    plain = LLMLinguaCompressor(model=str(tiny_lm_dir), rate=0.5)
    result = plain.compress("", _docs(4, 60))
    assert 0.4 <= result.rate <= 0.6


def test_force_keep_and_target_tokens(tiny: LongLLMLinguaCompressor) -> None:
    docs = _docs(8, 50)
    stage = LongLLMLinguaCompressor(
        tiny.config.model_copy(update={"target_tokens": 60, "force_keep": ["d7"]})
    )
    stage._scorer = tiny._scorer
    result = stage.compress("Which ferry?", docs)
    assert "d7" in {d.id for d in result.documents}
    assert result.tokens_out <= 60 * 1.1 + 5


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="context_budget"):
        LongLLMLinguaCompressor(context_budget="__import__('os').system('x')")
    with pytest.raises(ConfigError, match="rate"):
        LongLLMLinguaCompressor(rate=1.5)


def test_a_50k_token_input_is_compressed_within_budget(
    tiny_lm_dir: Path, tiny: LongLLMLinguaCompressor
) -> None:
    """Longer than the tiny model's 1,024-position window: ranking reads the head, scoring slides."""
    long_doc = Document(
        id="long", text=" ".join(random.Random(1).choice(WORDS) for _ in range(17_000))
    )
    docs = [long_doc, *_docs(3, 40)]
    stage = LongLLMLinguaCompressor(tiny.config.model_copy(update={"rate": 0.3}))
    stage._scorer = tiny._scorer
    result = stage.compress("Where did the keeper walk?", docs)
    assert result.tokens_in >= 50_000
    assert abs(result.rate - 0.3) / 0.3 <= 0.1
    assert _is_word_subsequence(
        next(d.text for d in result.documents if d.id == "long"), long_doc.text
    )


@pytest.mark.model
def test_question_ranking_puts_the_answering_document_first() -> None:
    """SmolLM2 alone (no priors) ranks the one document that answers the question first."""
    docs = [
        Document(id="ferry", text="The ferry to Saltmere leaves twice a day from the north quay."),
        Document(
            id="answer",
            text="The Brassmoor Lighthouse is 38 metres tall and painted red and white.",
        ),
        Document(id="market", text="The island market sells fish, wool and honey every Saturday."),
    ]
    stage = LongLLMLinguaCompressor(rate=0.9, retriever_prior=0, lexical_prior=0)
    result = stage.compress("How tall is the Brassmoor Lighthouse?", docs)
    ranks = {r.id: r.rank for r in result.reports}
    assert ranks["answer"] == 0
