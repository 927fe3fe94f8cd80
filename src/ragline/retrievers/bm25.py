"""`retriever.bm25`: lexical retrieval with bm25s over an index directory."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ragline.errors import UsageError
from ragline.retrievers.base import IndexRetriever, IndexRetrieverConfig
from ragline.retrievers.index import Index

if TYPE_CHECKING:
    import numpy as np

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


class _Tokenizer:
    """bm25s tokenisation with one stemmer instance (building a stemmer per query costs more than BM25)."""

    def __init__(self, settings: BM25Settings) -> None:
        self.settings = settings
        self.stemmer = None
        if settings.stemmer:
            import Stemmer

            self.stemmer = Stemmer.Stemmer(settings.stemmer)

    def __call__(self, texts: list[str], *, ids: bool, progress: bool = False) -> Any:
        return _bm25s().tokenize(
            texts,
            stopwords=self.settings.stopwords,
            stemmer=self.stemmer,
            return_ids=ids,
            show_progress=progress,
        )


def build_bm25(
    texts: list[str], out: Path, settings: BM25Settings, *, progress: bool = True
) -> None:
    """Tokenise `texts` and save a bm25s index into the directory `out`."""
    progress = progress and sys.stderr.isatty()
    tokens = _Tokenizer(settings)(texts, ids=True, progress=progress)
    if not tokens.vocab:
        raise UsageError(
            f"no indexable words: every document is empty after stop-word removal (stopwords={settings.stopwords!r})"
        )
    retriever = _bm25s().BM25()
    retriever.index(tokens, show_progress=progress)
    retriever.save(str(out))


class BM25Config(IndexRetrieverConfig):
    """Parameters of `retriever.bm25`."""


class BM25Retriever(IndexRetriever[BM25Config]):
    """Rank the index's documents by BM25 against the question; documents with no overlap are dropped.

    Example:
        >>> stage = BM25Retriever(index="./my-index", top_k=5, where={"source_id": "a.md"})  # doctest: +SKIP
    """

    type_name = "retriever.bm25"
    Config = BM25Config
    component = "bm25"

    def _load(self, index: Index, settings: dict[str, Any]) -> None:
        self._tokenize = _Tokenizer(BM25Settings(**settings))
        self._bm25 = _bm25s().BM25.load(str(index.path / "bm25"))

    def _search(self, text: str, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        tokens = self._tokenize([text], ids=False)
        if not tokens or not tokens[0]:
            return []
        mask = None
        if allowed is not None:
            import numpy as np

            mask = np.zeros(len(self.index.documents), dtype=np.float32)
            mask[allowed] = 1.0
        ids, scores = self._bm25.retrieve(
            tokens, k=k, show_progress=False, n_threads=1, weight_mask=mask
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]
