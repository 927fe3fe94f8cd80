"""What the LangChain runnable adds to a question: `as_runnable().invoke` against `pipeline.run`.

Two measurements, each interleaving the two calls (alternating which goes first) so that machine
noise falls on both alike:

1. the default pipeline (BM25 top-3, SmolLM2-135M, greedy, so both calls do identical work) on
   the first N bundled questions: the ratio of wall times, goal <= 1.05;
2. a trivial pipeline (a fixed retriever and an echo generator) where the stages cost
   microseconds, so the difference is the runnable's own cost in milliseconds.

    python benchmarks/langchain_overhead.py [--questions 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from _common import environment, summarize, write_results
from pipeline_overhead import EchoGenerator, FixedRetriever
from ragline import Pipeline
from ragline.bundled import default_index
from ragline.generators.prompt import NumberedPrompt
from ragline.pipeline.batch import read_questions

REPO = Path(__file__).resolve().parents[1]
GOAL = 1.05
Call = tuple[float, float]  # wall seconds, seconds the stages report


def _run(pipe: Pipeline) -> Callable[[str], float]:
    def call(question: str) -> float:
        return sum(pipe.run(question).timings.values())

    return call


def _invoke(pipe: Pipeline) -> Callable[[str], float]:
    runnable = pipe.as_runnable()

    def call(question: str) -> float:
        return sum(runnable.invoke(question).response_metadata["timings"].values())

    return call


def interleaved(pipe: Pipeline, questions: list[str], repeats: int) -> dict[str, list[Call]]:
    """(wall, stage seconds) per call of `pipe.run` and of the runnable's `invoke`, paired by question."""
    calls = {"run": _run(pipe), "invoke": _invoke(pipe)}
    out: dict[str, list[Call]] = {"run": [], "invoke": []}
    for r in range(repeats):
        for i, q in enumerate(questions):
            order = ("run", "invoke") if (i + r) % 2 == 0 else ("invoke", "run")
            for name in order:
                t0 = time.perf_counter()
                inside = calls[name](q)
                out[name].append((time.perf_counter() - t0, inside))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trivial-questions", type=int, default=2000)
    args = parser.parse_args()

    questions = [
        q.text for q in read_questions(REPO / "examples" / "questions.jsonl")[: args.questions]
    ]
    pipe = Pipeline.from_yaml(
        REPO / "examples" / "pipelines" / "default.yaml",
        env={"RAGLINE_INDEX": str(default_index())},
    )
    pipe.warm_up()
    load_before = os.getloadavg()
    interleaved(pipe, questions[:2], 1)  # first calls pay one-off costs (imports, caches)
    calls = interleaved(pipe, questions, args.repeats)
    run_s = [wall for wall, _ in calls["run"]]
    invoke_s = [wall for wall, _ in calls["invoke"]]
    paired = [b / a for a, b in zip(run_s, invoke_s, strict=True)]
    ratio_total = sum(invoke_s) / sum(run_s)
    # On a shared machine the stages' own time swings by tens of percent between calls; the time
    # outside the stages is what the runnable can add, so it gives a steadier estimate.
    outside = {k: [wall - inside for wall, inside in v] for k, v in calls.items()}
    added_s = statistics.median(outside["invoke"]) - statistics.median(outside["run"])
    ratio_outside = 1 + added_s / statistics.median(run_s)

    trivial = Pipeline([FixedRetriever(), NumberedPrompt(), EchoGenerator()])
    tq = [f"question {i}?" for i in range(args.trivial_questions)]
    interleaved(trivial, tq[:200], 1)
    tcalls = interleaved(trivial, tq, 1)
    t_run = [wall for wall, _ in tcalls["run"]]
    t_invoke = [wall for wall, _ in tcalls["invoke"]]
    added_ms = (statistics.median(t_invoke) - statistics.median(t_run)) * 1e3

    rows = {
        "default: pipeline.run": summarize(run_s),
        "default: runnable.invoke": summarize(invoke_s),
        "default: run, outside stages": summarize(outside["run"]),
        "default: invoke, outside stages": summarize(outside["invoke"]),
        "trivial: pipeline.run": summarize(t_run),
        "trivial: runnable.invoke": summarize(t_invoke),
    }
    print(f"{'measure':<32} {'median ms':>10} {'p10 ms':>10} {'p90 ms':>10}")
    for name, s in rows.items():
        print(
            f"{name:<32} {s['median'] * 1e3:>10.3f} {s['p10'] * 1e3:>10.3f} {s['p90'] * 1e3:>10.3f}"
        )
    ratio = statistics.median(paired)
    verdict = "PASS" if ratio <= GOAL else "FAIL"
    print(
        f"\ninvoke / run on the default pipeline: median paired ratio {ratio:.4f}, "
        f"total-time ratio {ratio_total:.4f} over {len(paired)} pairs: {verdict} (<= {GOAL})"
        f"\nfrom the time outside the stages: invoke adds {added_s * 1e3:.3f} ms to a "
        f"{statistics.median(run_s):.2f} s run, ratio {ratio_outside:.5f}"
        f"\nthe runnable's own cost (trivial pipeline): {added_ms:.3f} ms per call"
    )
    path = write_results(
        "langchain_overhead",
        {
            "benchmark": "langchain_overhead",
            "environment": environment(
                ("ragline", "torch", "transformers", "langchain-core", "pydantic")
            ),
            "pipeline": "examples/pipelines/default.yaml",
            "questions": len(questions),
            "repeats": args.repeats,
            "seconds": rows,
            "paired_ratio_median": ratio,
            "paired_ratio_p10_p90": [summarize(paired)["p10"], summarize(paired)["p90"]],
            "total_time_ratio": ratio_total,
            "outside_stages_added_ms": added_s * 1e3,
            "outside_stages_ratio": ratio_outside,
            "trivial_added_ms": added_ms,
            # Other work on the machine is what spreads the paired ratios; record how much there was.
            "load_average_1_5_15_before": load_before,
            "load_average_1_5_15_after": os.getloadavg(),
            "goal": f"invoke / run <= {GOAL}",
            "pass": ratio <= GOAL,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
