"""`pipeline.as_runnable()`: invoke, stream, batch, async, callbacks and LCEL composition."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate

from ragline import Pipeline, RunState
from ragline.errors import UsageError
from ragline.generators import NumberedPrompt
from ragline.langchain import RaglineRunnable
from ragline.retrievers.langchain import LangChainRetriever
from tests.retrievers.test_langchain import make_retriever

QUESTION = "Who designed the Brassmoor Lighthouse?"


def test_invoke_matches_pipeline_run(tiny_pipeline: Pipeline) -> None:
    runnable = tiny_pipeline.as_runnable()
    assert isinstance(runnable, RaglineRunnable)
    answer = tiny_pipeline.run(QUESTION)
    message = runnable.invoke(QUESTION)
    assert isinstance(message, AIMessage)
    assert message.content == answer.text
    meta = message.response_metadata
    assert [s["id"] for s in meta["sources"]] == [s.document.id for s in answer.sources]
    assert meta["citations"] == list(answer.citations)
    assert meta["question"] == QUESTION
    assert set(meta["timings"]) == {"retriever.bm25", "prompt.numbered", "generator.hf"}
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == answer.completion_tokens


def test_inputs_dict_prompt_value_and_message(tiny_pipeline: Pipeline) -> None:
    runnable = tiny_pipeline.as_runnable()
    expected = tiny_pipeline.run(QUESTION).text
    by_dict = runnable.invoke({"question": QUESTION, "id": 7})
    assert by_dict.content == expected and by_dict.response_metadata["id"] == "7"
    chat_prompt = ChatPromptTemplate.from_messages([("system", "ignored"), ("human", "{q}")])
    assert (chat_prompt | runnable).invoke({"q": QUESTION}).content == expected
    assert (PromptTemplate.from_template("{q}") | runnable).invoke(
        {"q": QUESTION}
    ).content == expected
    with pytest.raises(UsageError, match="expected a 'question' string"):
        runnable.invoke({"query": QUESTION})
    with pytest.raises(UsageError, match="got int"):
        runnable.invoke(42)
    with pytest.raises(UsageError, match="non-empty question"):
        runnable.invoke("  ")


def test_stream_yields_tokens_then_sources(tiny_pipeline: Pipeline) -> None:
    runnable = tiny_pipeline.as_runnable()
    chunks = list(runnable.stream(QUESTION))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len(chunks) > 2  # token by token, not one block
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    whole = runnable.invoke(QUESTION)
    assert str(total.content).strip() == whole.content
    assert chunks[-1].response_metadata["sources"] == whole.response_metadata["sources"]
    assert all(not c.response_metadata for c in chunks[:-1])


def test_async_invoke_and_stream(tiny_pipeline: Pipeline) -> None:
    runnable = tiny_pipeline.as_runnable()
    expected = runnable.invoke(QUESTION).content

    async def go() -> tuple[AIMessage, list[AIMessageChunk]]:
        one = await runnable.ainvoke(QUESTION)
        chunks = [c async for c in runnable.astream({"question": QUESTION})]
        return one, chunks

    one, chunks = asyncio.run(go())
    assert one.content == expected
    assert len(chunks) > 2
    assert "".join(str(c.content) for c in chunks).strip() == expected
    assert chunks[-1].response_metadata["sources"]


def test_lcel_chain_with_prompt_and_parser(tiny_pipeline: Pipeline) -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "Question about the isles: {topic}")])
    chain = prompt | tiny_pipeline.as_runnable() | StrOutputParser()
    text = chain.invoke({"topic": "the lighthouse"})
    assert isinstance(text, str)
    pieces = list(chain.stream({"topic": "the lighthouse"}))
    assert len(pieces) > 2 and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces).strip() == text


class _Gate:
    """A stage that records how many runs overlap."""

    name = "gate"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def run(self, state: RunState) -> RunState:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.05)
        with self.lock:
            self.now -= 1
        return state


class _Echo:
    name = "generator.echo"

    def run(self, state: RunState) -> RunState:
        from ragline.types import Answer

        return state.evolve(answer=Answer(text=state.query.text, question=state.query.text))


@pytest.mark.parametrize("limit", [1, 3])
def test_batch_and_abatch_honour_max_concurrency(limit: int) -> None:
    gate = _Gate()
    runnable = Pipeline([gate, _Echo()]).as_runnable()
    questions = [f"q{i}?" for i in range(8)]
    out = runnable.batch(questions, config={"max_concurrency": limit})
    assert [m.content for m in out] == questions
    assert gate.peak == limit
    gate.peak = 0
    out = asyncio.run(runnable.abatch(questions, config={"max_concurrency": limit}))
    assert [m.content for m in out] == questions
    assert gate.peak == limit


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.chains: list[tuple[str, UUID, list[str] | None]] = []
        self.retrievers: list[tuple[UUID | None, list[str] | None]] = []
        self.ends = 0

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self.chains.append((kw.get("name") or "", run_id, kw.get("tags")))

    def on_chain_end(self, outputs: Any, **kw: Any) -> None:
        self.ends += 1

    def on_retriever_start(self, serialized: Any, query: str, **kw: Any) -> None:
        self.retrievers.append((kw.get("parent_run_id"), kw.get("tags")))


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
def test_callbacks_trace_and_config_reach_child_runnables(mode: str) -> None:
    pipe = Pipeline([LangChainRetriever(retriever=make_retriever()), NumberedPrompt(), _Echo()])
    pipe.name = "traced"
    runnable = pipe.as_runnable()
    rec = _Recorder()
    config: Any = {"callbacks": [rec], "tags": ["outer"]}

    async def consume_astream() -> None:
        async for _ in runnable.astream(QUESTION, config=config):
            pass

    if mode == "invoke":
        runnable.invoke(QUESTION, config=config)
    elif mode == "stream":
        list(runnable.stream(QUESTION, config=config))
    elif mode == "ainvoke":
        asyncio.run(runnable.ainvoke(QUESTION, config=config))
    else:
        asyncio.run(consume_astream())
    (name, run_id, tags), *_ = rec.chains
    assert name == "ragline:traced" and tags == ["outer"]
    assert rec.ends >= 1
    # The LangChain retriever inside the pipeline is traced as a child of the pipeline's run.
    assert rec.retrievers == [(run_id, ["outer"])]
