"""The framework's own cost per question: pipeline wall time minus the time its stages report.

Trivial stages (a fixed retriever, a sort, the real prompt builder, an echo generator) keep the
stage work tiny, so what remains is ragline's: query validation, state copies, tracing, and
assembling the Answer. Goal: median overhead under 1 ms per question.

    python benchmarks/pipeline_overhead.py [--questions 1000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

from _common import environment, summarize, write_results
from ragline import Answer, Document, Pipeline, RunState, StageTrace
from ragline.generators.prompt import NumberedPrompt
from ragline.reorder.sort import SortReorderer
from ragline.types import Source

DOCS = tuple(
    Document(f"d{i}", f"passage number {i} " * 20, {"title": f"Doc {i}"}, score=float(i % 7))
    for i in range(10)
)


class FixedRetriever:
    """Returns the same ten documents, timing itself like a built-in stage."""

    name = "retriever.fixed"

    def run(self, state: RunState) -> RunState:
        started = time.perf_counter()
        return state.evolve(
            documents=DOCS, trace=StageTrace.since(self.name, started, retrieved=len(DOCS))
        )


class EchoGenerator:
    """Answers with the question, citing the first source."""

    name = "generator.echo"

    def stream(self, state: RunState) -> Iterator[str | RunState]:
        started = time.perf_counter()
        prompt = state.prompt
        assert prompt is not None
        yield state.query.text
        sources = tuple(Source(i + 1, d, i == 0) for i, d in enumerate(prompt.sources))
        answer = Answer(
            text=state.query.text,
            question=state.query.text,
            sources=sources,
            citations=(sources[0].document.id,),
        )
        yield state.evolve(answer=answer, trace=StageTrace.since(self.name, started))

    def run(self, state: RunState) -> RunState:
        *_, final = self.stream(state)
        assert isinstance(final, RunState)
        return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    pipe = Pipeline([FixedRetriever(), SortReorderer(), NumberedPrompt(), EchoGenerator()])
    questions = [f"question number {i}?" for i in range(args.questions)]
    for q in questions[: args.warmup]:
        pipe.run(q)
    overhead, stage_sum, wall = [], [], []
    for q in questions:
        t0 = time.perf_counter()
        answer = pipe.run(q)
        total = time.perf_counter() - t0
        inside = sum(t.seconds for t in answer.trace)
        wall.append(total)
        stage_sum.append(inside)
        overhead.append(total - inside)
    # Streaming path, same measure.
    stream_overhead = []
    for q in questions[: max(1, args.questions // 4)]:
        t0 = time.perf_counter()
        *_, final = pipe.stream(q)
        total = time.perf_counter() - t0
        assert isinstance(final, Answer)
        stream_overhead.append(total - sum(t.seconds for t in final.trace))

    rows = {
        "run: overhead": summarize(overhead),
        "run: stages": summarize(stage_sum),
        "run: wall": summarize(wall),
        "stream: overhead": summarize(stream_overhead),
    }
    print(f"{'measure':<20} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8}")
    for name, s in rows.items():
        print(
            f"{name:<20} {s['median'] * 1e3:>10.4f} {s['p10'] * 1e3:>8.4f} {s['p90'] * 1e3:>8.4f}"
        )
    median_ms = rows["run: overhead"]["median"] * 1e3
    verdict = "PASS" if median_ms < 1.0 else "FAIL"
    print(
        f"\nmedian framework overhead {median_ms:.4f} ms per question over {args.questions} questions: {verdict} (< 1 ms)"
    )
    path = write_results(
        "pipeline_overhead",
        {
            "benchmark": "pipeline_overhead",
            "environment": environment(),
            "questions": args.questions,
            "stages": [s.name for s in pipe.stages],
            "seconds": rows,
            "goal": "median overhead < 1 ms",
            "median_overhead_ms": median_ms,
            "pass": median_ms < 1.0,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
