"""RaglineRetriever, RaglineCompressor and generator.langchain_chat: ragline stages inside LangChain and back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document as LCDocument
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from ragline import Pipeline, RunState
from ragline.errors import ConfigError, RaglineError
from ragline.generators import NumberedPrompt
from ragline.langchain import LangChainChatGenerator, RaglineCompressor, RaglineRetriever
from ragline.reorder.sort import SortReorderer
from ragline.retrievers.bm25 import BM25Retriever
from ragline.types import Document

QUESTION = "Who designed the Brassmoor Lighthouse?"


def test_retriever_returns_ragline_documents_with_ids_and_scores(example_index: Path) -> None:
    stage = BM25Retriever(index=str(example_index), top_k=5)
    found = RaglineRetriever(stage=stage, k=4).invoke(QUESTION)
    direct = stage.run(RunState(query=__import__("ragline").Query(QUESTION))).documents
    assert [d.id for d in found] == [d.id for d in direct[:4]]
    assert [d.metadata["score"] for d in found] == [d.score for d in direct[:4]]
    assert found[0].metadata["title"] == direct[0].title
    assert len(RaglineRetriever(stage=stage).invoke(QUESTION, k=2)) == 2
    assert len(RaglineRetriever(stage=stage).invoke(QUESTION)) == 5
    no_score = RaglineRetriever(stage=stage, score_key=None).invoke(QUESTION)
    assert "score" not in no_score[0].metadata


def test_retriever_from_pipeline_and_async(example_index: Path) -> None:
    pipe = Pipeline(
        [BM25Retriever(index=str(example_index), top_k=3), SortReorderer(descending=False)]
    )
    retriever = RaglineRetriever(stage=pipe)
    docs = asyncio.run(retriever.ainvoke(QUESTION))
    scores = [d.metadata["score"] for d in docs]
    assert len(docs) == 3 and scores == sorted(scores)


def test_retriever_rejects_non_stages() -> None:
    with pytest.raises(ValueError, match="expected a ragline stage or Pipeline, got str"):
        RaglineRetriever(stage="retriever.bm25")


class _Shorten:
    """A compressor-like stage: keeps the first three words of each document, best first."""

    name = "compressor.shorten"

    def run(self, state: RunState) -> RunState:
        docs = sorted(state.documents, key=lambda d: -(d.score or 0))
        short = tuple(
            Document(d.id, " ".join(d.text.split()[:3]), d.metadata, d.score) for d in docs
        )
        return state.evolve(documents=short)


def _lc_docs() -> list[LCDocument]:
    return [
        LCDocument(
            page_content="alpha beta gamma delta", metadata={"score": 1, "src": "a"}, id="a"
        ),
        LCDocument(page_content="one two three four five", metadata={"score": 9, "src": "b"}),
        LCDocument(page_content="same text", metadata={"score": 5, "nested": {"x": [1]}}),
        LCDocument(page_content="same text", metadata={"score": 4}),
    ]


def test_compressor_keeps_ids_and_metadata_intact() -> None:
    docs = _lc_docs()
    out = RaglineCompressor(stage=_Shorten()).compress_documents(docs, QUESTION)
    assert [d.page_content for d in out] == [
        "one two three",
        "same text",
        "same text",
        "alpha beta gamma",
    ]
    assert [d.id for d in out] == [None, None, None, "a"]
    # The very same metadata as came in (duplicates by content each map back to their own).
    assert [d.metadata for d in out] == [
        docs[1].metadata,
        docs[2].metadata,
        docs[3].metadata,
        docs[0].metadata,
    ]
    again = asyncio.run(
        RaglineCompressor(stage=SortReorderer()).acompress_documents(docs, QUESTION)
    )
    assert [d.metadata["score"] for d in again] == [9, 5, 4, 1]
    scored = RaglineCompressor(stage=_Shorten(), score_key="ragline_score").compress_documents(
        docs, QUESTION
    )
    assert scored[0].metadata == {**docs[1].metadata, "ragline_score": 9.0}


def make_chat_model(
    text: str = "The Brassmoor Lighthouse was designed by Tobias Grell [3].",
) -> GenericFakeChatModel:
    """A LangChain chat model that streams `text` (the factory the YAML form names)."""
    return GenericFakeChatModel(messages=iter([AIMessage(content=text)] * 10))


def _retrieval(example_index: Path) -> list[Any]:
    return [BM25Retriever(index=str(example_index), top_k=3), NumberedPrompt()]


def test_chat_model_as_generator_stage(example_index: Path) -> None:
    stage = LangChainChatGenerator(chat_model=make_chat_model())
    pipe = Pipeline([*_retrieval(example_index), stage])
    answer = pipe.run(QUESTION)
    assert answer.text == "The Brassmoor Lighthouse was designed by Tobias Grell [3]."
    assert answer.citation_method == "marker" and answer.citations == (
        answer.sources[2].document.id,
    )
    chunks = [c for c in pipe.stream(QUESTION) if isinstance(c, str)]
    assert len(chunks) > 2 and "".join(chunks) == answer.text
    assert asyncio.run(pipe.arun(QUESTION)).text == answer.text
    assert repr(stage) == "LangChainChatGenerator(chat_model=GenericFakeChatModel(...))"
    with pytest.raises(RaglineError, match="cannot be serialised"):
        stage.to_config()
    with pytest.raises(TypeError, match="expected a langchain_core BaseChatModel, got str"):
        LangChainChatGenerator(chat_model="gpt")  # type: ignore[arg-type]


def test_chat_generator_factory_round_trips(example_index: Path) -> None:
    factory = "tests.langchain.test_adapters:make_chat_model"
    stage = LangChainChatGenerator(
        factory=factory, kwargs={"text": "Grell [1]."}, allow_imports=True
    )
    config = stage.to_config()
    assert config == {
        "type": "generator.langchain_chat",
        "factory": factory,
        "kwargs": {"text": "Grell [1]."},
        "allow_imports": True,
    }
    again = Pipeline.from_config({"stages": [config]}).stages[0]
    assert isinstance(again, LangChainChatGenerator) and again.config == stage.config
    assert Pipeline([*_retrieval(example_index), again]).run(QUESTION).text == "Grell [1]."
    with pytest.raises(ConfigError, match="allow_imports: true"):
        LangChainChatGenerator(factory=factory)
    bad = LangChainChatGenerator(
        factory="tests.langchain.test_adapters:_lc_docs", allow_imports=True
    )
    with pytest.raises(ConfigError, match="must return a langchain_core BaseChatModel, got list"):
        bad.warm_up()


def test_chat_generator_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "chat.yaml"
    path.write_text(
        "stages:\n  - type: generator.langchain_chat\n"
        "    factory: tests.langchain.test_adapters:make_chat_model\n"
        "    allow_imports: true\n    kwargs: {text: hi}\n",
        encoding="utf-8",
    )
    first = Pipeline.from_yaml(path)
    first.to_yaml(tmp_path / "again.yaml")
    assert Pipeline.from_yaml(tmp_path / "again.yaml").to_config() == first.to_config()


def test_compressor_wraps_longllmlingua(tiny_lm_dir: Path) -> None:
    from ragline.compressors import LongLLMLinguaCompressor

    docs = [
        LCDocument(
            page_content="The Brassmoor Lighthouse was designed by Tobias Grell and first lit in 1871. "
            "It stands 38 metres tall on the northern cape of Brassmoor island.",
            metadata={"title": "Brassmoor Lighthouse", "score": 2.0, "url": "a"},
            id="light",
        ),
        LCDocument(
            page_content="Tarnberry wine is a dark red wine made from berries that grow on the "
            "moors; it is served warm at the winter lantern festival.",
            metadata={"title": "Tarnberry wine", "score": 1.0},
            id="wine",
        ),
    ]
    stage = LongLLMLinguaCompressor(model=str(tiny_lm_dir), rate=0.5)
    out = RaglineCompressor(stage=stage).compress_documents(docs, QUESTION)
    by_id = {d.id: d for d in out}
    assert set(by_id) <= {"light", "wine"} and out
    for doc in out:
        original = next(d for d in docs if d.id == doc.id)
        assert doc.metadata == original.metadata  # untouched
        assert len(doc.page_content.split()) < len(original.page_content.split())
