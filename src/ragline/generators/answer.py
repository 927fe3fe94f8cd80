"""What every generator does after the text: cite sources and assemble the `Answer` and its trace."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ragline.generators.citations import attribute_citations
from ragline.generators.prompt import NumberedPromptConfig, build_prompt
from ragline.types import Answer, Prompt, RunState, Source, StageTrace

__all__ = ["final_state", "finish_answer", "prompt_of"]


def final_state(stream: Iterable[str | RunState]) -> RunState:
    """Drain a generator's `stream(state)` and return the state it ends with."""
    final = None
    for item in stream:
        if isinstance(item, RunState):
            final = item
    if final is None:
        raise RuntimeError("a generator's stream ended without its final state")
    return final


def prompt_of(state: RunState) -> Prompt:
    """The state's prompt, or the default numbered prompt when no `prompt.*` stage ran."""
    return state.prompt or build_prompt(state.query, state.documents, NumberedPromptConfig())


def finish_answer(
    state: RunState,
    prompt: Prompt,
    text: str,
    *,
    stage: str,
    started: float,
    first_token_at: float | None,
    prompt_tokens: int,
    completion_tokens: int,
    **details: Any,
) -> RunState:
    """Restore words a compressor dropped, attribute citations, build the `Answer`, and trace it.

    `started` and `first_token_at` are `time.perf_counter()` values; `details` go into the trace.
    """
    text = text.strip()
    if state.originals:
        # A compressor ran: put back words it dropped inside spans the answer copied.
        from ragline.compressors.recover import recover_all

        text = recover_all(text, state.originals, {d.id: d.text for d in prompt.sources})
    numbers, method = attribute_citations(text, prompt.sources, state.query.text)
    sources = tuple(Source(n, d, n in numbers) for n, d in enumerate(prompt.sources, start=1))
    answer = Answer(
        text=text,
        question=state.query.text,
        sources=sources,
        citations=tuple(prompt.sources[n - 1].id for n in numbers),
        citation_method=method,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    end = time.perf_counter()
    decoding = end - first_token_at if first_token_at is not None else 0.0
    trace = StageTrace.since(
        stage,
        started,
        tokens_in=prompt_tokens,
        tokens_out=completion_tokens,
        **details,
        time_to_first_token=(first_token_at or end) - started,
        decode_tokens_per_second=(completion_tokens - 1) / decoding
        if completion_tokens > 1 and decoding > 0
        else None,
    )
    return state.evolve(prompt=prompt, answer=answer, trace=trace)
