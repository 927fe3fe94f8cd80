"""`retriever.langchain`: a LangChain BaseRetriever as a stage, from Python and from YAML."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import Field

from ragline import Pipeline
from ragline.errors import ConfigError, MissingDependency, RaglineError
from ragline.retrievers.langchain import (
    LangChainRetriever,
    from_langchain_documents,
    to_langchain_documents,
)
from ragline.types import Document, Query, RunState

FACTORY = "tests.retrievers.test_langchain:make_retriever"


def sha16(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def fixed_documents(prefix: str = "") -> list[LCDocument]:
    return [
        LCDocument(id="lc-1", page_content=f"{prefix}first", metadata={"title": "One", "score": 3}),
        LCDocument(page_content=f"{prefix}second", metadata={"id": 42, "score": 0.5}),
        LCDocument(page_content=f"{prefix}third", metadata={"source": "x.md", "score": "high"}),
        LCDocument(page_content=f"{prefix}fourth", metadata={"score": True}),
    ]


class FixedRetriever(BaseRetriever):
    """Returns the same documents for every query, recording the queries it saw."""

    prefix: str = ""
    seen: list[str] = Field(default_factory=list)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[LCDocument]:
        self.seen.append(query)
        return fixed_documents(self.prefix)


def make_retriever(prefix: str = "") -> FixedRetriever:
    """The factory the YAML form names."""
    return FixedRetriever(prefix=prefix, seen=[])


def not_a_retriever() -> str:
    return "nope"


STATE = RunState(Query("what comes first?"))


def test_run_converts_documents() -> None:
    retriever = make_retriever()
    out = LangChainRetriever(retriever=retriever).run(STATE)
    assert retriever.seen == ["what comes first?"]
    docs = out.documents
    assert [d.id for d in docs] == ["lc-1", "42", sha16("third"), sha16("fourth")]
    assert [d.text for d in docs] == ["first", "second", "third", "fourth"]
    assert [d.score for d in docs] == [3.0, 0.5, None, None]
    assert docs[0].title == "One" and dict(docs[0].metadata) == {"title": "One", "score": 3}
    assert dict(docs[2].metadata) == {"source": "x.md", "score": "high"}
    trace = out.trace[-1]
    assert trace.stage == "retriever.langchain"
    assert dict(trace.details) == {"retrieved": 4, "candidates": 4}


def test_hash_ids_are_stable() -> None:
    first = LangChainRetriever(retriever=make_retriever()).run(STATE).documents
    second = LangChainRetriever(retriever=make_retriever()).run(STATE).documents
    assert [d.id for d in first] == [d.id for d in second]
    assert first[2].id == sha16("third") and len(first[2].id) == 16


def test_top_k_and_name() -> None:
    out = LangChainRetriever(retriever=make_retriever(), top_k=2, name="lc").run(STATE)
    assert [d.id for d in out.documents] == ["lc-1", "42"]
    assert out.trace[-1].stage == "lc"
    assert dict(out.trace[-1].details) == {"retrieved": 2, "candidates": 4}


def test_arun_uses_ainvoke() -> None:
    retriever = make_retriever()
    stage = LangChainRetriever(retriever=retriever, top_k=3)
    out = asyncio.run(stage.arun(STATE))
    assert out.documents == stage.run(STATE).documents
    assert len(out.documents) == 3 and retriever.seen == ["what comes first?"] * 2


def test_live_object_validation() -> None:
    with pytest.raises(ConfigError, match=r"top_k: input should be greater than or equal to 1"):
        LangChainRetriever(retriever=make_retriever(), top_k=0)
    with pytest.raises(ConfigError, match=r"factory: unknown key"):
        LangChainRetriever(retriever=make_retriever(), factory=FACTORY)
    with pytest.raises(TypeError, match="expected a langchain_core BaseRetriever, got str"):
        LangChainRetriever(retriever="nope")


def test_live_object_cannot_be_serialised() -> None:
    stage = LangChainRetriever(retriever=make_retriever(), top_k=2)
    with pytest.raises(RaglineError, match=r"live FixedRetriever object cannot be serialised"):
        stage.to_config()
    with pytest.raises(RaglineError, match="cannot be serialised"):
        Pipeline([stage]).to_config()
    assert repr(stage) == "LangChainRetriever(retriever=FixedRetriever(...), top_k=2)"


def test_factory_form_runs_and_round_trips() -> None:
    stage = LangChainRetriever(
        factory=FACTORY, kwargs={"prefix": "p-"}, top_k=3, allow_imports=True
    )
    config = stage.to_config()
    assert config == {
        "type": "retriever.langchain",
        "top_k": 3,
        "allow_imports": True,
        "factory": FACTORY,
        "kwargs": {"prefix": "p-"},
    }
    again = Pipeline.from_config({"stages": [config]}).stages[0]
    assert isinstance(again, LangChainRetriever) and again.config == stage.config
    first, second = stage.run(STATE).documents, again.run(STATE).documents
    assert first == second
    assert [d.text for d in first] == ["p-first", "p-second", "p-third"]


def test_factory_form_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "pipe.yaml"
    path.write_text(
        f"stages:\n  - type: retriever.langchain\n    allow_imports: true\n"
        f"    factory: {FACTORY}\n    kwargs: {{prefix: y-}}\n",
        encoding="utf-8",
    )
    out = Pipeline.from_yaml(path).stages[0].run(STATE)
    assert out.documents[0].text == "y-first"


def test_factory_is_refused_without_allow_imports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"factory: .*allow_imports: true"):
        LangChainRetriever(factory=FACTORY)
    path = tmp_path / "pipe.yaml"
    path.write_text(
        f"stages:\n  - type: retriever.langchain\n    factory: {FACTORY}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r":3: stages\[0\]\.factory: .*allow_imports: true"):
        Pipeline.from_yaml(path)


@pytest.mark.parametrize(
    ("factory", "pattern"),
    [
        ("not an import path", r"expected an import path 'package\.module:callable'"),
        ("tests.retrievers.no_such_module:make", "cannot import factory"),
        ("tests.retrievers.test_langchain:missing", "cannot import factory"),
        ("tests.retrievers.test_langchain:FACTORY", "is not callable"),
        (
            "tests.retrievers.test_langchain:not_a_retriever",
            "must return a langchain_core BaseRetriever, got str",
        ),
    ],
)
def test_bad_factories(factory: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        LangChainRetriever(factory=factory, allow_imports=True).run(STATE)


def test_document_converters_round_trip() -> None:
    docs = [
        Document("a", "alpha", {"title": "A", "source": "a.md"}),
        Document("b", "beta", {"tags": ["x"]}, score=0.25),
    ]
    lc_docs = to_langchain_documents(docs)
    assert [d.id for d in lc_docs] == ["a", "b"]
    assert [d.page_content for d in lc_docs] == ["alpha", "beta"]
    assert lc_docs[0].metadata == {"title": "A", "source": "a.md"}
    assert lc_docs[1].metadata == {"tags": ["x"], "score": 0.25}
    back = from_langchain_documents(lc_docs)
    assert back[0] == docs[0]
    assert (back[1].id, back[1].text, back[1].score) == ("b", "beta", 0.25)
    assert dict(back[1].metadata) == {"tags": ["x"], "score": 0.25}
    assert to_langchain_documents(docs, score_key=None)[1].metadata == {"tags": ["x"]}
    lc = fixed_documents()
    assert to_langchain_documents(from_langchain_documents(lc))[0] == lc[0]


def test_relevance_score_key() -> None:
    lc = [LCDocument(page_content="t", metadata={"relevance_score": 0.9})]
    assert from_langchain_documents(lc, score_key="relevance_score")[0].score == 0.9
    assert from_langchain_documents(lc)[0].score is None


def test_missing_langchain_core(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("langchain_core", "langchain_core.documents", "langchain_core.retrievers"):
        monkeypatch.setitem(sys.modules, module, None)
    hint = r"langchain-core.*retriever\.langchain.*pip install 'ragline\[langchain\]'"
    with pytest.raises(MissingDependency, match=hint):
        LangChainRetriever(retriever=object())
    stage = LangChainRetriever(factory=FACTORY, allow_imports=True)  # cheap: imports nothing
    with pytest.raises(MissingDependency, match=hint):
        stage.warm_up()
    with pytest.raises(MissingDependency, match=hint):
        to_langchain_documents([Document("a", "alpha")])


def test_tests_package_is_importable() -> None:
    import importlib

    module = importlib.import_module("tests.retrievers.test_langchain")
    assert callable(module.make_retriever)
