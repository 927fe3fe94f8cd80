"""`Pipeline.as_runnable()`: the whole pipeline as a LangChain `Runnable` that answers with an `AIMessage`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict

from ragline.errors import UsageError
from ragline.pipeline import Pipeline
from ragline.types import Answer, Query

__all__ = ["RaglineRunnable", "answer_message", "to_query"]


def to_query(value: Any) -> Query:
    """Turn a runnable's input into a `Query`.

    Accepts a question string, `{"question": ..., "id": ...}`, a prompt template's output (the
    last message of a chat prompt, or the whole string prompt), or a message.
    """
    if isinstance(value, Query):
        return value
    if isinstance(value, str):
        return Query(value)
    if isinstance(value, Mapping):
        question = value.get("question")
        if not isinstance(question, str):
            raise UsageError(
                f"input: expected a 'question' string in the mapping, got keys {sorted(map(str, value))}"
            )
        qid = value.get("id")
        return Query(question, id=None if qid is None else str(qid))
    if isinstance(value, PromptValue):
        messages = value.to_messages()
        return to_query(messages[-1] if messages else value.to_string())
    if isinstance(value, BaseMessage):
        return Query(value.text)
    raise UsageError(
        "input: expected a question string, {'question': ...}, a prompt value or a message, "
        f"got {type(value).__name__}"
    )


def _metadata(answer: Answer) -> dict[str, Any]:
    data = answer.to_dict()
    return {
        "ragline": True,
        "question": data["question"],
        "id": data["id"],
        "citations": data["citations"],
        "citation_method": data["citation_method"],
        "sources": data["sources"],
        "timings": data["timings"],
    }


def _usage(answer: Answer) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=answer.prompt_tokens,
        output_tokens=answer.completion_tokens,
        total_tokens=answer.prompt_tokens + answer.completion_tokens,
    )


def answer_message(answer: Answer) -> AIMessage:
    """The `Answer` as an `AIMessage`: text as content, sources and citations in `response_metadata`."""
    return AIMessage(
        content=answer.text,
        response_metadata=_metadata(answer),
        usage_metadata=_usage(answer),
    )


def _last_chunk(answer: Answer) -> AIMessageChunk:
    # No text here: the chunks before it already carried every token, so their sum is the answer.
    return AIMessageChunk(
        content="",
        response_metadata=_metadata(answer),
        usage_metadata=_usage(answer),
        chunk_position="last",
    )


def _fold(final: Any, chunk: Any) -> Any:
    """Add `chunk` to the running output; types without `+` keep the latest chunk."""
    if final is None:
        return chunk
    try:
        return final + chunk
    except TypeError:
        return chunk


def _gather(chunks: Iterator[Any]) -> Any:
    final: Any = None
    for chunk in chunks:
        final = _fold(final, chunk)
    return final


async def _agather(chunks: AsyncIterator[Any]) -> Any:
    final: Any = None
    async for chunk in chunks:
        final = _fold(final, chunk)
    return final


class RaglineRunnable(RunnableSerializable[Any, AIMessage]):
    """A ragline `Pipeline` as a LangChain Runnable: question in, `AIMessage` with sources out.

    The message's `response_metadata` holds `sources` (numbered documents with `cited`),
    `citations` (cited document ids), `citation_method` and per-stage `timings`;
    `usage_metadata` holds the token counts. `stream` yields `AIMessageChunk`s as the generator
    produces tokens, the last one carrying the metadata. Callbacks and the run config reach
    LangChain components inside the pipeline (a `retriever.langchain` or
    `generator.langchain_chat` stage) as child runs.

    Example:
        >>> chain = prompt | pipeline.as_runnable() | StrOutputParser()  # doctest: +SKIP
        >>> chain.invoke({"topic": "lighthouses"})  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Pipeline

    @property
    def InputType(self) -> Any:
        """What `invoke` accepts."""
        return str | dict[str, Any] | PromptValue

    @property
    def OutputType(self) -> type[AIMessage]:
        """What `invoke` returns."""
        return AIMessage

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        """The run name traces show: `ragline:<pipeline name>`."""
        return super().get_name(suffix, name=name or f"ragline:{self.pipeline.name}")

    # -- one question ------------------------------------------------------------------------

    def _invoke(self, value: Any) -> AIMessage:
        return answer_message(self.pipeline.run(to_query(value)))

    async def _ainvoke(self, value: Any) -> AIMessage:
        return answer_message(await self.pipeline.arun(to_query(value)))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        """Answer one question."""
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def ainvoke(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Answer one question without blocking the event loop."""
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    # -- streaming -------------------------------------------------------------------------

    def _transform(
        self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun
    ) -> Iterator[AIMessageChunk]:
        query = to_query(_gather(inputs))
        for item in self.pipeline.stream(query):
            yield _last_chunk(item) if isinstance(item, Answer) else AIMessageChunk(content=item)

    async def _atransform(
        self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun
    ) -> AsyncIterator[AIMessageChunk]:
        query = to_query(await _agather(inputs))
        async for item in self.pipeline.astream(query):
            yield _last_chunk(item) if isinstance(item, Answer) else AIMessageChunk(content=item)

    def transform(
        self,
        input: Iterator[Any],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream the answer of the question gathered from an upstream stream."""
        stream = self._transform_stream_with_config(input, self._transform, config, **kwargs)
        yield from cast(Iterator[AIMessageChunk], stream)

    def stream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream the answer as `AIMessageChunk`s, token by token; the last chunk holds the sources."""
        yield from self.transform(iter([input]), config, **kwargs)

    async def atransform(
        self,
        input: AsyncIterator[Any],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Async `transform`."""
        stream = self._atransform_stream_with_config(input, self._atransform, config, **kwargs)
        async for chunk in cast(AsyncIterator[AIMessageChunk], stream):
            yield chunk

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Async `stream`."""

        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(one(), config, **kwargs):
            yield chunk
