"""The pipeline runs stages in order, records a trace, and streams, batches and awaits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from ragline import Answer, Document, Pipeline, Query, RunState, StageTrace
from ragline.errors import RaglineError, UsageError
from ragline.types import Source


class AddDocs:
    """Third-party style stage: no trace of its own."""

    name = "add"

    def run(self, state: RunState) -> RunState:
        return state.evolve(
            documents=(Document("d1", "alpha", score=1.0), Document("d2", "beta", score=3.0))
        )


class Sleepy:
    name = "sleepy"

    def run(self, state: RunState) -> RunState:
        started = time.perf_counter()
        time.sleep(0.01)
        return state.evolve(trace=StageTrace.since(self.name, started, tokens_in=3, note="slept"))


class Echo:
    """A generator that streams the question back word by word."""

    name = "echo"

    def stream(self, state: RunState) -> Iterator[str | RunState]:
        words = state.query.text.split()
        yield from (w + " " for w in words)
        docs = state.documents
        answer = Answer(
            text=" ".join(words) + " ",
            question=state.query.text,
            sources=tuple(Source(i + 1, d, i == 0) for i, d in enumerate(docs)),
            citations=(docs[0].id,) if docs else (),
        )
        yield state.evolve(answer=answer)

    def run(self, state: RunState) -> RunState:
        *_, final = self.stream(state)
        assert isinstance(final, RunState)
        return final


def test_run_threads_state_and_records_every_stage() -> None:
    answer = Pipeline([AddDocs(), Sleepy(), Echo()]).run("why is the sky blue")
    assert answer.text.strip() == "why is the sky blue"
    assert [t.stage for t in answer.trace] == ["add", "sleepy", "echo"]
    sleepy = answer.trace[1]
    assert sleepy.seconds >= 0.01 and sleepy.tokens_in == 3 and sleepy.details["note"] == "slept"
    assert all(t.seconds >= 0 for t in answer.trace)
    assert answer.citations == ("d1",)
    assert set(answer.timings) == {"add", "sleepy", "echo"}


def test_stream_yields_chunks_then_answer() -> None:
    items = list(Pipeline([AddDocs(), Echo()]).stream("one two three"))
    assert items[:3] == ["one ", "two ", "three "]
    assert isinstance(items[-1], Answer) and len(items) == 4
    assert [t.stage for t in items[-1].trace] == ["add", "echo"]


def test_stream_of_a_non_streaming_last_stage_yields_the_whole_text() -> None:
    class Plain(Echo):
        stream = None  # type: ignore[assignment]

        def run(self, state: RunState) -> RunState:
            return state.evolve(answer=Answer(text="done", question=state.query.text))

    items = list(Pipeline([Plain()]).stream("q"))
    assert items[0] == "done" and isinstance(items[1], Answer)


def test_batch_and_arun_match_run() -> None:
    pipe = Pipeline([AddDocs(), Echo()])
    batch = pipe.batch(["a b", "c"], progress=False)
    assert [a.text for a in batch] == ["a b ", "c "]
    answer = asyncio.run(pipe.arun("x y"))
    assert answer.text == "x y " and [t.stage for t in answer.trace] == ["add", "echo"]


def test_astream_yields_like_stream() -> None:
    async def collect() -> list[object]:
        return [item async for item in Pipeline([Echo()]).astream("p q")]

    items = asyncio.run(collect())
    assert items[:2] == ["p ", "q "] and isinstance(items[-1], Answer)


@pytest.mark.parametrize("question", ["", "   \n"])
def test_empty_question_is_a_usage_error(question: str) -> None:
    with pytest.raises(UsageError, match="non-empty question"):
        Pipeline([Echo()]).run(question)


def test_pipeline_without_generator_has_no_answer_but_a_state() -> None:
    pipe = Pipeline([AddDocs()])
    state = pipe.run_state("q")
    assert [d.id for d in state.documents] == ["d1", "d2"]
    with pytest.raises(RaglineError, match="no generator"):
        pipe.run("q")


def test_stage_returning_wrong_type_is_reported() -> None:
    class Bad:
        name = "bad"

        def run(self, state: RunState) -> dict[str, str]:
            return {"not": "a state"}

    with pytest.raises(RaglineError, match="'bad' returned dict"):
        Pipeline([Bad()]).run("q")  # type: ignore[list-item]


def test_non_stage_is_refused() -> None:
    with pytest.raises(TypeError, match=r"stages\[0\]"):
        Pipeline([object()])  # type: ignore[list-item]


def test_warm_up_runs_once_and_close_is_called() -> None:
    calls: list[str] = []

    class Heavy(Echo):
        def warm_up(self) -> None:
            calls.append("warm")

        def close(self) -> None:
            calls.append("close")

    with Pipeline([Heavy()]) as pipe:
        pipe.run("a")
        pipe.run("b")
    assert calls == ["warm", "close"]


def test_states_are_immutable() -> None:
    state = RunState(Query("q"))
    with pytest.raises(AttributeError):
        state.documents = ()  # type: ignore[misc]
