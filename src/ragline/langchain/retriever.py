"""`RaglineRetriever`: any ragline retriever stage (or retrieval-only pipeline) as a LangChain `BaseRetriever`."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from ragline.langchain._warm import WarmOnce
from ragline.pipeline import Pipeline, Stage
from ragline.pipeline.pipeline import as_query
from ragline.retrievers.langchain import to_langchain_documents
from ragline.types import RunState

__all__ = ["RaglineRetriever"]


class RaglineRetriever(BaseRetriever):
    """Retrieve with a ragline stage (`retriever.bm25`, `.dense`, `.hybrid`, ...) from LangChain code.

    Documents keep their ragline ids (`Document.id`) and metadata; the score goes to
    `metadata[score_key]`. `k` caps the number returned (the stage's own `top_k` is the most
    there can be); `invoke(query, k=2)` overrides it per call. The stage warms up on first use.

    Example:
        >>> from ragline.retrievers import BM25Retriever  # doctest: +SKIP
        >>> retriever = RaglineRetriever(stage=BM25Retriever(index="my-index", top_k=10), k=4)  # doctest: +SKIP
        >>> retriever.invoke("lighthouse keeper")  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    stage: Any
    """A ragline stage that fills `state.documents`, or a `Pipeline` of such stages."""
    k: int | None = Field(default=None, ge=1)
    """Return at most this many documents; None returns all the stage found."""
    score_key: str | None = "score"
    """The metadata key for each document's score; None leaves it out."""

    _warm: WarmOnce = PrivateAttr(default_factory=WarmOnce)

    @field_validator("stage")
    @classmethod
    def _is_stage(cls, value: Any) -> Any:
        if not isinstance(value, Pipeline | Stage):
            raise ValueError(f"expected a ragline stage or Pipeline, got {type(value).__name__}")
        return value

    def _warm_up(self) -> None:
        self._warm(self.stage)

    def _retrieve(self, query: str) -> RunState:
        if isinstance(self.stage, Pipeline):
            return self.stage.run_state(query)
        return self.stage.run(RunState(query=as_query(query)))

    def _convert(self, state: RunState, k: int | None) -> list[LCDocument]:
        limit = k if k is not None else self.k
        docs = state.documents[:limit] if limit is not None else state.documents
        return to_langchain_documents(docs, score_key=self.score_key)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[LCDocument]:
        self._warm_up()
        return self._convert(self._retrieve(query), k)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
    ) -> list[LCDocument]:
        if not self._warm.done:
            await asyncio.to_thread(self._warm_up)
        if isinstance(self.stage, Pipeline):
            state = await self.stage.arun_state(query)
        elif (arun := getattr(self.stage, "arun", None)) is not None:
            state = await arun(RunState(query=as_query(query)))
        else:
            state = await asyncio.to_thread(self._retrieve, query)
        return self._convert(state, k)
