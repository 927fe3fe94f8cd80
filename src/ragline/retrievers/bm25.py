"""`retriever.bm25`: lexical retrieval with bm25s over an index directory."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragline.errors import UsageError
from ragline.pipeline.stage import ConfiguredStage, StageConfig
from ragline.retrievers.index import Index, open_index
from ragline.types import RunState, StageTrace

__all__ = ["BM25Config", "BM25Retriever", "BM25Settings", "build_bm25"]


class BM25Settings(BaseModel):
    """Tokenisation used at index time; queries are tokenised the same way."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stemmer: str | None = "english"
    """A PyStemmer language, or null for no stemming."""
    stopwords: str | None = "en"
    """A bm25s stop-word language code, or null to keep every word."""


def _bm25s() -> Any:
    import bm25s

    # bm25s sets its own logger to DEBUG, which floods any root handler.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _tokenize(texts: list[str], settings: BM25Settings, *, ids: bool, progress: bool) -> Any:
    bm25s = _bm25s()

    stemmer = None
    if settings.stemmer:
        import Stemmer

        stemmer = Stemmer.Stemmer(settings.stemmer)
    return bm25s.tokenize(
        texts, stopwords=settings.stopwords, stemmer=stemmer, return_ids=ids, show_progress=progress
    )


def build_bm25(
    texts: list[str], out: Path, settings: BM25Settings, *, progress: bool = True
) -> None:
    """Tokenise `texts` and save a bm25s index into the directory `out`."""
    bm25s = _bm25s()
    progress = progress and sys.stderr.isatty()

    tokens = _tokenize(texts, settings, ids=True, progress=progress)
    if not tokens.vocab:
        raise UsageError(
            f"no indexable words: every document is empty after stop-word removal (stopwords={settings.stopwords!r})"
        )
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=progress)
    retriever.save(str(out))


class BM25Config(StageConfig):
    """Parameters of `retriever.bm25`."""

    index: str
    """The index directory written by `ragline index`."""
    top_k: int = Field(default=5, ge=1)
    """How many documents to return at most."""
    verify: bool = True
    """Check every index file's checksum when opening."""


class BM25Retriever(ConfiguredStage[BM25Config]):
    """Rank the index's documents by BM25 against the question; documents with no overlap are dropped.

    Example:
        >>> stage = BM25Retriever(index="./my-index", top_k=5)  # doctest: +SKIP
    """

    type_name = "retriever.bm25"
    Config = BM25Config

    def __init__(self, config: BM25Config | None = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self._index: Index | None = None
        self._bm25: Any = None
        self._settings: BM25Settings | None = None

    def warm_up(self) -> None:
        """Open and verify the index and load the BM25 structure."""
        if self._bm25 is not None:
            return
        bm25s = _bm25s()
        index = open_index(self.config.index, verify=self.config.verify)
        self._settings = BM25Settings(**index.component("bm25"))
        self._bm25 = bm25s.BM25.load(str(index.path / "bm25"))
        self._index = index

    def run(self, state: RunState) -> RunState:
        """Put the top-k documents (with BM25 scores) into `state.documents`."""
        self.warm_up()
        assert self._index is not None and self._settings is not None
        started = time.perf_counter()
        docs = self._index.documents
        tokens = _tokenize([state.query.text], self._settings, ids=False, progress=False)
        found = []
        if tokens and tokens[0]:
            k = min(self.config.top_k, len(docs))
            ids, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
            found = [
                docs[int(i)].with_score(float(s))
                for i, s in zip(ids[0], scores[0], strict=True)
                if s > 0
            ]
        trace = StageTrace.since(self.name, started, retrieved=len(found), corpus=len(docs))
        return state.evolve(documents=tuple(found), trace=trace)
