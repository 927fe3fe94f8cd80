"""`retriever.bm25` on a small hand-written corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ragline.errors import ConfigError, IndexCorrupt, IndexNotFound
from ragline.retrievers.bm25 import BM25Config, BM25Retriever
from ragline.retrievers.indexing import build_index
from ragline.types import Document, Query, RunState

CORPUS = {
    "lighthouse": "The lighthouse keeper lit the lamp each night to guide ships past the rocky coast.",
    "bees": "Bees gather nectar from flowers and turn it into honey inside the hive.",
    "volcano": "A volcano erupts when molten rock and ash burst through the crust.",
    "chess": "The chess grandmaster sacrificed a bishop to win the endgame.",
    "penguins": "Penguins swim through cold water hunting fish and krill.",
    "bread": "Sourdough bread rises slowly because wild yeast ferments the flour and water.",
    "harbour": "Fishing ships return to the harbour when storms churn the water near the coast.",
}


def make_index(out: Path, **bm25: str | None) -> str:
    """Index `CORPUS` at `out` with the given BM25 settings; return the path as a string."""
    docs = [Document(k, v, {"title": k.title()}) for k, v in CORPUS.items()]
    build_index(docs, out, progress=False, bm25=bm25 or None)
    return str(out)


def search(index: str, text: str, **params: object) -> RunState:
    """Run a fresh retriever over `index` for the question `text`."""
    return BM25Retriever(index=index, **params).run(RunState(Query(text)))


def ids(state: RunState) -> list[str]:
    """The ids of the retrieved documents, best first."""
    return [d.id for d in state.documents]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`CORPUS` indexed with English stemming and stop words."""
    return make_index(tmp_path_factory.mktemp("bm25") / "idx")


@pytest.mark.parametrize(
    ("query", "best"),
    [
        ("lighthouse keeper", "lighthouse"),
        ("where does honey come from", "bees"),
        ("molten rock", "volcano"),
        ("bishop sacrifice", "chess"),
        ("what do penguins eat? krill", "penguins"),
        ("sourdough yeast", "bread"),
        ("ships coast water", "harbour"),
    ],
)
def test_top_document_for_query(index: str, query: str, best: str) -> None:
    state = search(index, query)

    assert ids(state)[0] == best


def test_top_k_limits_the_number_of_documents(index: str) -> None:
    assert len(search(index, "ships coast water", top_k=5).documents) == 4
    assert ids(search(index, "ships coast water", top_k=2)) == ["harbour", "lighthouse"]
    assert len(search(index, "ships coast water", top_k=1).documents) == 1


def test_scores_are_positive_and_descending(index: str) -> None:
    scores = [d.score for d in search(index, "ships coast water", top_k=7).documents]

    assert len(scores) == 4
    assert all(s is not None and s > 0 for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]


def test_documents_keep_their_text_and_metadata(index: str) -> None:
    [doc] = search(index, "krill").documents

    assert doc.text == CORPUS["penguins"]
    assert doc.title == "Penguins"


def test_documents_without_overlap_are_dropped(index: str) -> None:
    assert ids(search(index, "honey", top_k=7)) == ["bees"]


def test_query_of_unknown_words_returns_nothing(index: str) -> None:
    assert search(index, "quasar zeppelin xylophone").documents == ()


@pytest.mark.parametrize("query", ["the and of", "is it", "", "   "])
def test_query_of_only_stop_words_returns_nothing(index: str, query: str) -> None:
    state = search(index, query)

    assert state.documents == ()
    assert state.trace[-1].details["retrieved"] == 0


def test_stemming_matches_plural_to_singular(index: str) -> None:
    assert ids(search(index, "lighthouses")) == ["lighthouse"]
    assert ids(search(index, "erupting volcanoes"))[0] == "volcano"


def test_without_stemmer_plural_does_not_match(tmp_path: Path) -> None:
    plain = make_index(tmp_path / "plain", stemmer=None)

    assert ids(search(plain, "lighthouses")) == []
    assert ids(search(plain, "lighthouse")) == ["lighthouse"]


def test_trace_names_the_stage_and_counts(index: str) -> None:
    state = search(index, "ships coast water", top_k=3)

    trace = state.trace[-1]
    assert trace.stage == "retriever.bm25"
    assert trace.details["retrieved"] == 3
    assert trace.details["corpus"] == len(CORPUS)
    assert trace.seconds >= 0


def test_trace_uses_the_configured_name(index: str) -> None:
    assert search(index, "honey", name="lexical").trace[-1].stage == "lexical"


def test_run_returns_a_new_state_and_keeps_the_input(index: str) -> None:
    state = RunState(Query("honey"))

    out = BM25Retriever(index=index).run(state)

    assert state.documents == () and state.trace == ()
    assert ids(out) == ["bees"]
    assert len(out.trace) == 1


def test_config_round_trip_behaves_the_same(index: str) -> None:
    stage = BM25Retriever(index=index, top_k=2, name="lex")

    config = stage.to_config()
    rebuilt = BM25Retriever.from_config({k: v for k, v in config.items() if k != "type"})

    assert config == {"type": "retriever.bm25", "index": index, "top_k": 2, "name": "lex"}
    assert rebuilt.config == stage.config
    state = RunState(Query("ships coast water"))
    assert rebuilt.run(state).documents == stage.run(state).documents


def test_to_config_omits_defaults(index: str) -> None:
    assert BM25Retriever(index=index).to_config() == {"type": "retriever.bm25", "index": index}


@pytest.mark.parametrize("top_k", [0, -1, "five", 2.5])
def test_bad_top_k_is_a_config_error(index: str, top_k: object) -> None:
    with pytest.raises(ConfigError, match="top_k") as err:
        BM25Retriever(index=index, top_k=top_k)
    assert err.value.exit_code == 2


def test_missing_index_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="index: required key is missing"):
        BM25Retriever(top_k=3)


def test_unknown_key_is_a_config_error(index: str) -> None:
    with pytest.raises(ConfigError, match="topk: unknown key"):
        BM25Retriever(index=index, topk=3)


def test_from_config_rejects_bad_values() -> None:
    with pytest.raises(ValidationError):
        BM25Retriever.from_config({"index": "x", "top_k": 0})


def test_constructor_does_not_open_the_index(tmp_path: Path) -> None:
    stage = BM25Retriever(BM25Config(index=str(tmp_path / "nowhere")))

    with pytest.raises(IndexNotFound):
        stage.warm_up()


def test_warm_up_verifies_checksums(tmp_path: Path) -> None:
    path = Path(make_index(tmp_path / "idx"))
    docs = path / "documents.jsonl"
    docs.write_text(docs.read_text(encoding="utf-8").replace("honey", "jam"), encoding="utf-8")

    with pytest.raises(IndexCorrupt, match="checksum mismatch"):
        BM25Retriever(index=str(path)).warm_up()
    BM25Retriever(index=str(path), verify=False).warm_up()
