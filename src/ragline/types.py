"""Core value types that flow through a pipeline: frozen dataclasses, no framework base classes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

__all__ = ["Answer", "Document", "Prompt", "Query", "RunState", "Source", "StageTrace"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Document:
    """A passage of text with a stable id, free-form metadata and an optional relevance score."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    score: float | None = None

    @property
    def title(self) -> str:
        """The document's title from its metadata, or an empty string."""
        return str(self.metadata.get("title", ""))

    def with_score(self, score: float | None) -> Document:
        """Return a copy carrying `score`."""
        return Document(self.id, self.text, self.metadata, score)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (`id`, `title`, `text`, `score`, `metadata`)."""
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "score": self.score,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class Query:
    """The user's question with an optional id (for batch runs) and metadata."""

    text: str
    id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered prompt in three segments, so later stages can address each segment's positions.

    `sources[i]` is the document cited as `[i+1]` inside `context`.
    """

    instruction: str
    context: str
    question: str
    sources: tuple[Document, ...] = ()

    def messages(self) -> list[dict[str, str]]:
        """Chat messages: the instruction as the system turn, documents and question as the user turn."""
        user = (
            f"{self.context}\n\nQuestion: {self.question}"
            if self.context
            else f"Question: {self.question}"
        )
        return [{"role": "system", "content": self.instruction}, {"role": "user", "content": user}]

    def plain(self) -> str:
        """The prompt as one string, for models without a chat template."""
        parts = [self.instruction, self.context, f"Question: {self.question}", "Answer:"]
        return "\n\n".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class StageTrace:
    """What one stage did: wall time, tokens in and out where it counts tokens, and details."""

    stage: str
    seconds: float
    tokens_in: int | None = None
    tokens_out: int | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def since(
        cls,
        stage: str,
        started: float,
        *,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        **details: Any,
    ) -> StageTrace:
        """A trace for `stage` whose time runs from `started` (a `time.perf_counter()` value) to now."""
        return cls(
            stage, time.perf_counter() - started, tokens_in, tokens_out, MappingProxyType(details)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "stage": self.stage,
            "seconds": self.seconds,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class Source:
    """A document as numbered in the prompt (`[number]`), and whether the answer cites it."""

    number: int
    document: Document
    cited: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        doc = self.document
        return {
            "number": self.number,
            "id": doc.id,
            "title": doc.title,
            "score": doc.score,
            "cited": self.cited,
            "text": doc.text,
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer with its numbered sources, cited document ids, token counts and timings.

    `citation_method` is "marker" when the model wrote `[n]` markers, "overlap" when the cited
    sources were attributed by word overlap between the answer and the documents, and "none".
    """

    text: str
    question: str
    sources: tuple[Source, ...] = ()
    citations: tuple[str, ...] = ()
    citation_method: str = "none"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    trace: tuple[StageTrace, ...] = ()
    query_id: str | None = None

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per stage, keyed by stage name in pipeline order (a repeated name gets `#2`, `#3`, ...)."""
        out: dict[str, float] = {}
        for t in self.trace:
            key, n = t.stage, 1
            while key in out:
                n += 1
                key = f"{t.stage}#{n}"
            out[key] = t.seconds
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict following `docs/answer.schema.json`."""
        return {
            "id": self.query_id,
            "question": self.question,
            "answer": self.text,
            "citations": list(self.citations),
            "citation_method": self.citation_method,
            "sources": [s.to_dict() for s in self.sources],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            },
            "timings": self.timings,
            "trace": [t.to_dict() for t in self.trace],
        }


@dataclass(frozen=True, slots=True)
class RunState:
    """The state a pipeline threads through its stages; each stage returns a new one."""

    query: Query
    documents: tuple[Document, ...] = ()
    prompt: Prompt | None = None
    answer: Answer | None = None
    trace: tuple[StageTrace, ...] = ()
    originals: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    """Text of documents before a compressor shortened them, by document id (for answer recovery)."""

    def evolve(self, trace: StageTrace | None = None, **changes: Any) -> RunState:
        """Return a copy with `changes` applied and, if given, `trace` appended to the trace."""
        if trace is not None:
            changes["trace"] = (*self.trace, trace)
        return replace(self, **changes)
