"""Answer quality of the default pipeline on the bundled example questions.

Runs `examples/pipelines/default.yaml` (BM25 top-3, SmolLM2-135M) on the 60 questions of
`examples/questions.jsonl` about the example corpus and scores, as in "Lost in the Middle":
an answer is correct when a gold answer is a substring of it after SQuAD normalisation;
a citation is correct when the cited documents include the gold document.

    python benchmarks/example_qa.py
"""

from __future__ import annotations

import argparse
import re
import string
from pathlib import Path

from _common import environment, summarize, write_results
from ragline import Pipeline
from ragline.bundled import default_index
from ragline.pipeline.batch import read_questions

REPO = Path(__file__).resolve().parents[1]


def normalize(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=REPO / "examples" / "questions.jsonl")
    parser.add_argument(
        "--pipeline", type=Path, default=REPO / "examples" / "pipelines" / "default.yaml"
    )
    args = parser.parse_args()

    pipe = Pipeline.from_yaml(args.pipeline, env={"RAGLINE_INDEX": str(default_index())})
    queries = read_questions(args.questions)
    rows = []
    for query in queries:
        answer = pipe.run(query)
        gold_answers = query.metadata["answers"]
        gold_id = query.metadata["gold_id"]
        rows.append(
            {
                "id": query.id,
                "correct": any(normalize(g) in normalize(answer.text) for g in gold_answers),
                "cited_gold": gold_id in answer.citations,
                "cited_any": bool(answer.citations),
                "retrieved_gold": gold_id in [s.document.id for s in answer.sources],
                "citation_method": answer.citation_method,
                "generator_s": answer.timings["generator.hf"],
                "answer": answer.text,
            }
        )
    n = len(rows)
    rate = {
        k: sum(r[k] for r in rows) / n
        for k in ("correct", "cited_gold", "cited_any", "retrieved_gold")
    }
    cited = [r for r in rows if r["cited_any"]]
    rate["citation_precision"] = sum(r["cited_gold"] for r in cited) / len(cited) if cited else 0.0
    print(f"{n} questions, default pipeline (BM25 top-3, SmolLM2-135M)")
    for k, v in rate.items():
        print(f"{k:<20} {v:.3f}")
    timing = summarize([r["generator_s"] for r in rows])
    print(f"{'generator median s':<20} {timing['median']:.2f}")
    path = write_results(
        "example_qa",
        {
            "benchmark": "example_qa",
            "environment": environment(),
            "pipeline": str(args.pipeline.relative_to(REPO)),
            "questions": n,
            "rates": rate,
            "generator_seconds": timing,
            "answers": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
