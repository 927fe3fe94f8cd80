"""`prompt.numbered`: render the documents as a numbered list the answer can cite as `[n]`."""

from __future__ import annotations

import string
import time

from pydantic import Field, field_validator

from ragline.pipeline.stage import ConfiguredStage, StageConfig
from ragline.types import Document, Prompt, Query, RunState, StageTrace

__all__ = ["DEFAULT_INSTRUCTION", "NumberedPrompt", "NumberedPromptConfig", "build_prompt"]

DEFAULT_INSTRUCTION = (
    "Answer the question using only the numbered documents. "
    "Reply with one short sentence and cite the document you used as [1], [2], etc."
)
_FIELDS = {"number", "title", "text", "id"}


class NumberedPromptConfig(StageConfig):
    """Parameters of `prompt.numbered`."""

    instruction: str = DEFAULT_INSTRUCTION
    """The system instruction placed before the documents."""
    document_template: str = "[{number}] {title}: {text}"
    """How each document is written; fields: number, title, text, id."""
    max_documents: int | None = Field(default=None, ge=1)
    """Keep only the first N documents (in the order the previous stage left them)."""

    @field_validator("document_template")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        unknown = names - _FIELDS
        if unknown:
            raise ValueError(
                f"unknown template fields {sorted(unknown)}; allowed: {sorted(_FIELDS)}"
            )
        try:  # format specs and conversions fail only when used: try them once now
            value.format(number=1, title="t", text="x", id="i")
        except (ValueError, KeyError, IndexError, AttributeError) as err:
            raise ValueError(f"invalid template: {err}") from None
        return value


def build_prompt(
    query: Query, documents: tuple[Document, ...], config: NumberedPromptConfig
) -> Prompt:
    """Number `documents` from 1 and render them with the question into a `Prompt`."""
    docs = documents[: config.max_documents] if config.max_documents else documents
    lines = []
    for n, doc in enumerate(docs, start=1):
        line = config.document_template.format(number=n, title=doc.title, text=doc.text, id=doc.id)
        # An untitled document would otherwise render as "[1] : text".
        lines.append(line.replace(f"[{n}] : ", f"[{n}] ") if not doc.title else line)
    return Prompt(
        instruction=config.instruction,
        context="\n\n".join(lines),
        question=query.text,
        sources=docs,
    )


class NumberedPrompt(ConfiguredStage[NumberedPromptConfig]):
    """Build the prompt: instruction, numbered documents (`[1] title: text`), question.

    Example:
        >>> from ragline.types import Document, Query, RunState
        >>> state = RunState(Query("Who?"), documents=(Document("a", "Ada wrote it.", {"title": "Ada"}),))
        >>> print(NumberedPrompt().run(state).prompt.context)
        [1] Ada: Ada wrote it.
    """

    type_name = "prompt.numbered"
    Config = NumberedPromptConfig

    def run(self, state: RunState) -> RunState:
        """Set `state.prompt`."""
        started = time.perf_counter()
        prompt = build_prompt(state.query, state.documents, self.config)
        trace = StageTrace.since(
            self.name, started, documents=len(prompt.sources), characters=len(prompt.context)
        )
        return state.evolve(prompt=prompt, trace=trace)
