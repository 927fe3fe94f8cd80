"""`retriever.bm25`: lexical retrieval with bm25s over an index directory."""

from __future__ import annotations

import logging
import re
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
    """bm25s tokenisation, with one stemmer instance and a fast path for single queries."""

    # bm25s's own pattern (scikit-learn's CountVectorizer default).
    _PATTERN = re.compile(r"(?u)\b\w\w+\b")

    def __init__(self, settings: BM25Settings) -> None:
        bm25s = _bm25s()
        self.settings = settings
        self._tokenize = bm25s.tokenize
        self.stemmer = None
        if settings.stemmer:
            import Stemmer

            self.stemmer = Stemmer.Stemmer(settings.stemmer)
        self._stop = frozenset(bm25s.tokenization._infer_stopwords(settings.stopwords) or ())

    def __call__(self, texts: list[str], *, ids: bool, progress: bool = False) -> Any:
        """Tokenise a corpus exactly as bm25s does."""
        return self._tokenize(
            texts,
            stopwords=self.settings.stopwords,
            stemmer=self.stemmer,
            return_ids=ids,
            show_progress=progress,
        )

    def query(self, text: str) -> list[str]:
        """The tokens bm25s would give one query, without its per-call progress-bar and vocabulary set-up.

        bm25s.tokenize costs more than BM25 scoring itself for a single query; a test checks
        that this equals `bm25s.tokenize(..., return_ids=False)` on real questions.
        """
        words = [w for w in self._PATTERN.findall(text.lower()) if w not in self._stop]
        return self.stemmer.stemWords(words) if self.stemmer is not None else words


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
        tokens = [self._tokenize.query(text)]
        if not tokens[0]:
            return []
        mask = None
        if allowed is not None:
            import numpy as np

            mask = np.zeros(len(self.index.documents), dtype=np.float32)
            mask[allowed] = 1.0
        # n_threads=0 scores in this thread; bm25s starts a thread pool per call otherwise.
        ids, scores = self._bm25.retrieve(
            tokens, k=k, show_progress=False, n_threads=0, weight_mask=mask
        )
        return [(i, s) for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True) if s > 0]
