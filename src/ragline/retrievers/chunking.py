"""Index-time chunking: cut long documents into overlapping, sentence-aligned passages."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragline.types import Document

__all__ = ["ChunkSettings", "chunk_document", "chunk_documents"]

_TOKEN = re.compile(r"\S+")
_SENTENCE_END = (".", "!", "?", "…")
_CLOSERS = "\"')]}»\u201d\u2019"
_OPENERS = "\"'([{«\u201c\u2018"
# A short list on purpose (no NLTK): a missed abbreviation only moves a chunk boundary.
_ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "cf.", "vs.", "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "fig.", "eq."}
)

Span = tuple[int, int]


class ChunkSettings(BaseModel):
    """How documents are cut into passages at index time.

    Tokens are words: maximal runs of non-whitespace characters (regex `\\S+`). Counting words
    is fast, deterministic and needs no tokenizer. The default of 180 words fits MiniLM's 256
    word-piece window (about 190 English words), so the embedder sees every word of a chunk.

    Example:
        >>> ChunkSettings(max_tokens=128, overlap=16).overlap
        16
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(default=180, ge=8)
    """The most tokens (words) in a chunk."""
    overlap: int = Field(default=30, ge=0)
    """The most tokens shared by consecutive chunks; whole sentences unless one is too long."""
    enabled: bool = True
    """False keeps every document whole."""

    @model_validator(mode="after")
    def _overlap_below_max_tokens(self) -> ChunkSettings:
        if self.overlap >= self.max_tokens:
            raise ValueError(
                f"overlap must be smaller than max_tokens; got overlap={self.overlap}, "
                f"max_tokens={self.max_tokens}"
            )
        return self


def _ends_sentence(token: str) -> bool:
    word = token.rstrip(_CLOSERS)
    return word.endswith(_SENTENCE_END) and word.lstrip(_OPENERS).lower() not in _ABBREVIATIONS


def _sentences(text: str, tokens: list[Span]) -> list[Span]:
    """Token ranges `[first, last)` of the sentences of `text`, in order, covering every token."""
    out: list[Span] = []
    first = 0
    for i, (start, end) in enumerate(tokens):
        if (
            i + 1 == len(tokens)
            or _ends_sentence(text[start:end])
            or text.count("\n", end, tokens[i + 1][0]) >= 2  # a blank line
        ):
            out.append((first, i + 1))
            first = i + 1
    return out


def _windows(first: int, last: int, settings: ChunkSettings) -> Iterator[Span]:
    """Token windows of `max_tokens` over `[first, last)`, overlapping by `overlap` tokens."""
    step = settings.max_tokens - settings.overlap
    for start in range(first, last, step):
        yield start, min(start + settings.max_tokens, last)
        if start + settings.max_tokens >= last:
            return


def _next_start(sizes: list[int], start: int, end: int, settings: ChunkSettings) -> int:
    """The first sentence of the chunk after `[start, end)`: the earliest that carries over at
    most `overlap` tokens and still leaves room for sentence `end`, so each chunk adds text."""
    first, carried = end, 0
    while (
        first - 1 > start
        and carried + sizes[first - 1] <= settings.overlap
        and carried + sizes[first - 1] + sizes[end] <= settings.max_tokens
    ):
        first -= 1
        carried += sizes[first]
    return first


def _chunk_ranges(sentences: list[Span], settings: ChunkSettings) -> Iterator[Span]:
    """Token ranges `[first, last)` of the chunks, in order."""
    sizes = [last - first for first, last in sentences]
    start = 0
    while start < len(sentences):
        end, tokens = start, 0
        while end < len(sentences) and tokens + sizes[end] <= settings.max_tokens:
            tokens += sizes[end]
            end += 1
        if end == start:  # one sentence longer than max_tokens
            yield from _windows(*sentences[start], settings)
            start += 1
            continue
        yield sentences[start][0], sentences[end - 1][1]
        if end == len(sentences):
            return
        start = _next_start(sizes, start, end, settings)


def _metadata(doc: Document, chunk: int, char_start: int, char_end: int) -> dict[str, Any]:
    return {
        **doc.metadata,
        "source_id": doc.id,
        "chunk": chunk,
        "char_start": char_start,
        "char_end": char_end,
    }


def chunk_document(doc: Document, settings: ChunkSettings) -> list[Document]:
    """Split `doc` into sentence-aligned chunks of at most `settings.max_tokens` words.

    A document that fits (or any document when chunking is disabled) comes back whole with its
    own id. Otherwise chunk `i` has id `f"{doc.id}#{i}"` and text
    `doc.text[char_start:char_end]`; metadata adds `source_id`, `chunk`, `char_start` and
    `char_end` to the document's own.

    Example:
        >>> doc = Document("d", "One two three four. " * 5)
        >>> [c.id for c in chunk_document(doc, ChunkSettings(max_tokens=8, overlap=4))]
        ['d#0', 'd#1', 'd#2', 'd#3']
    """
    tokens = [m.span() for m in _TOKEN.finditer(doc.text)]
    if not settings.enabled or len(tokens) <= settings.max_tokens:
        return [replace(doc, metadata=_metadata(doc, 0, 0, len(doc.text)))]
    chunks = []
    for i, (first, last) in enumerate(_chunk_ranges(_sentences(doc.text, tokens), settings)):
        start, end = tokens[first][0], tokens[last - 1][1]
        chunks.append(
            Document(
                id=f"{doc.id}#{i}", text=doc.text[start:end], metadata=_metadata(doc, i, start, end)
            )
        )
    return chunks


def chunk_documents(docs: Iterable[Document], settings: ChunkSettings) -> Iterator[Document]:
    """Lazily yield the chunks of each document in `docs`, in order."""
    for doc in docs:
        yield from chunk_document(doc, settings)
