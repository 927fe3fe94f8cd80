"""`RaglineCompressor`: a ragline document stage (compressor, reranker, reorderer) as a LangChain compressor."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor
from langchain_core.documents import Document as LCDocument
from pydantic import ConfigDict, PrivateAttr, field_validator

from ragline.langchain._warm import WarmOnce
from ragline.pipeline import Stage
from ragline.pipeline.pipeline import as_query
from ragline.retrievers.langchain import from_langchain_documents, to_langchain_documents
from ragline.types import Document, RunState

__all__ = ["RaglineCompressor"]


class RaglineCompressor(BaseDocumentCompressor):
    """Run a ragline stage that rewrites `state.documents` over LangChain documents.

    Each returned document is the input document it came from, with the stage's text: its `id`
    and `metadata` are the caller's, untouched. The stage's score is added under `score_key`
    only when that is set (a reranker's score, say). Scores are read from `metadata["score"]`
    on the way in, so score-based stages such as `reorder.sort` see them.

    Example:
        >>> from langchain_classic.retrievers import ContextualCompressionRetriever  # doctest: +SKIP
        >>> ContextualCompressionRetriever(base_compressor=RaglineCompressor(stage=SortReorderer()),
        ...                                base_retriever=my_retriever)  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    stage: Any
    """A ragline stage that reads and returns `state.documents`."""
    score_key: str | None = None
    """Write the stage's score to this metadata key; None leaves metadata exactly as it came."""

    _warm: WarmOnce = PrivateAttr(default_factory=WarmOnce)

    @field_validator("stage")
    @classmethod
    def _is_stage(cls, value: Any) -> Any:
        if not isinstance(value, Stage):
            raise ValueError(f"expected a ragline stage, got {type(value).__name__}")
        return value

    def _warm_up(self) -> None:
        self._warm(self.stage)

    def _run(self, documents: Sequence[LCDocument], query: str) -> list[LCDocument]:
        self._warm_up()
        docs = from_langchain_documents(documents)
        state = self.stage.run(RunState(query=as_query(query), documents=tuple(docs)))
        return self._back(documents, docs, state.documents)

    def _back(
        self, originals: Sequence[LCDocument], inputs: list[Document], outputs: Sequence[Document]
    ) -> list[LCDocument]:
        # Ids may repeat (two chunks hashing alike), so each id maps to a queue of originals.
        by_id: dict[str, deque[LCDocument]] = defaultdict(deque)
        for doc, original in zip(inputs, originals, strict=True):
            by_id[doc.id].append(original)
        out = []
        for doc in outputs:
            pending = by_id.get(doc.id)
            if not pending:  # a document the stage made up itself
                out.extend(to_langchain_documents([doc], score_key=self.score_key))
                continue
            original = pending.popleft()
            metadata = dict(original.metadata)
            if self.score_key is not None and doc.score is not None:
                metadata[self.score_key] = doc.score
            out.append(LCDocument(page_content=doc.text, metadata=metadata, id=original.id))
        return out

    def compress_documents(
        self, documents: Sequence[LCDocument], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[LCDocument]:
        """Return the stage's documents for `query`, carrying the input documents' ids and metadata."""
        return self._run(documents, query)

    async def acompress_documents(
        self, documents: Sequence[LCDocument], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[LCDocument]:
        """Async `compress_documents` (the stage runs in a worker thread)."""
        return await asyncio.to_thread(self._run, documents, query)
