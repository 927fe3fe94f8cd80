"""Shared shape of retrievers over an index directory: open once, filter, search, trace."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import Field, field_validator

from ragline.errors import UsageError
from ragline.pipeline.stage import ConfiguredStage, StageConfig
from ragline.retrievers.filters import validate_where
from ragline.retrievers.index import Index, open_index
from ragline.types import Document, RunState, StageTrace

__all__ = ["IndexRetriever", "IndexRetrieverConfig"]


class IndexRetrieverConfig(StageConfig):
    """Parameters every index retriever shares."""

    index: str
    """The index directory written by `ragline index`."""
    top_k: int = Field(default=5, ge=1)
    """How many documents to return at most."""
    where: dict[str, Any] | None = None
    """Metadata filter: `{key: value}` or `{key: [v1, v2]}`; all keys must match. A query's
    `metadata["where"]` adds to it."""
    verify: bool = True
    """Check every index file's checksum when opening."""

    @field_validator("where")
    @classmethod
    def _valid_where(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            return validate_where(value)
        except UsageError as err:  # pydantic reports ValueError with the YAML path and line
            raise ValueError(str(err)) from None


C = TypeVar("C", bound=IndexRetrieverConfig)


class IndexRetriever(ConfiguredStage[C], ABC):
    """Base of retrievers that search an index directory; subclasses implement `_load` and `_search`."""

    component: ClassVar[str]

    def __init__(self, config: C | None = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self._index: Index | None = None

    @property
    def index(self) -> Index:
        """The opened index (opening it on first use)."""
        self.warm_up()
        assert self._index is not None
        return self._index

    def warm_up(self) -> None:
        """Open and verify the index and load this retriever's search structure."""
        if self._index is None:
            index = open_index(self.config.index, verify=self.config.verify)
            self._load(index, index.component(self.component))
            self._index = index

    @abstractmethod
    def _load(self, index: Index, settings: dict[str, Any]) -> None:
        """Load this retriever's search structure from `index` with the manifest's `settings`."""

    @abstractmethod
    def _search(self, text: str, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """Return up to `k` (row, score) pairs, best first, restricted to `allowed` rows when given."""

    def search(
        self, text: str, *, top_k: int | None = None, where: dict[str, Any] | None = None
    ) -> list[tuple[int, float]]:
        """Rows and scores for `text`, best first; `where` narrows the configured filter."""
        index = self.index
        allowed = index.allowed_ids(self.config.where)
        if where:  # a query's filter narrows the configured one (both must match)
            extra = index.allowed_ids(where)
            assert extra is not None
            allowed = (
                extra if allowed is None else np.intersect1d(allowed, extra, assume_unique=True)
            )
        k = min(
            top_k or self.config.top_k, len(index.documents) if allowed is None else len(allowed)
        )
        return self._search(text, k, allowed) if k > 0 else []

    def run(self, state: RunState) -> RunState:
        """Put the top-k documents (with scores) into `state.documents`."""
        index = self.index
        started = time.perf_counter()
        hits = self.search(state.query.text, where=state.query.metadata.get("where"))
        stored = index.documents
        # Built directly: this loop is most of ragline's own cost per BM25 query.
        docs = tuple(
            [Document(stored[i].id, stored[i].text, stored[i].metadata, s) for i, s in hits]
        )
        trace = StageTrace.since(
            self.name, started, retrieved=len(docs), corpus=len(index.documents)
        )
        return state.evolve(documents=docs, trace=trace)
