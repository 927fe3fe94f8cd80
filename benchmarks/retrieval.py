"""Retrieval quality and speed on the shared NQ data: recall@1/5/20 and query latency per method.

Indexes the 2,600 gold passages of `../shared/data/nq_corpus.jsonl.gz` and asks the 2,100
questions of `nq_questions.jsonl.gz`. Methods: bm25, dense (MiniLM) with flat, HNSW and IVF
faiss indexes, and hybrid (bm25 + dense-flat, reciprocal-rank fusion). In the same run, the
raw libraries (bm25s; sentence-transformers + faiss) answer the same queries, so ragline's
overhead is a ratio measured side by side.

    python benchmarks/retrieval.py [--questions N] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import environment, summarize, write_results
from ragline.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    build_index,
    read_documents,
)
from ragline.types import Query, RunState

KS = (1, 5, 20)


def load_questions(path: Path, limit: int | None) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return rows[:limit] if limit else rows


def evaluate(stage: Any, questions: list[dict[str, Any]]) -> dict[str, Any]:
    """Recall@k of the gold passage and per-query latency of `stage.run`."""
    hits = dict.fromkeys(KS, 0)
    seconds = []
    for q in questions:
        t0 = time.perf_counter()
        docs = stage.run(RunState(Query(q["question"]))).documents
        seconds.append(time.perf_counter() - t0)
        ids = [d.id for d in docs]
        for k in KS:
            hits[k] += q["gold_id"] in ids[:k]
    n = len(questions)
    return {"recall": {f"@{k}": hits[k] / n for k in KS}, "latency_s": summarize(seconds)}


def raw_vs_ours(raw: Any, ours: Any, questions: list[dict[str, Any]]) -> dict[str, Any]:
    """Alternate raw and ragline calls query by query so both see the same machine state."""
    raw_s, ours_s = [], []
    for q in questions:
        t0 = time.perf_counter()
        raw(q["question"])
        t1 = time.perf_counter()
        ours.run(RunState(Query(q["question"])))
        t2 = time.perf_counter()
        raw_s.append(t1 - t0)
        ours_s.append(t2 - t1)
    ratio_median = statistics.median(ours_s) / statistics.median(raw_s)
    ratio_total = sum(ours_s) / sum(raw_s)
    return {
        "raw_s": summarize(raw_s),
        "ragline_s": summarize(ours_s),
        "ratio_median": ratio_median,
        "ratio_total": ratio_total,
    }


def build(
    docs: list[Any], out: Path, methods: list[str], dense: dict[str, Any] | None = None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    build_index(docs, out, methods=methods, dense=dense, progress=False)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "passages_per_second": len(docs) / seconds}


def raw_bm25(index_dir: Path) -> Any:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    model = bm25s.BM25.load(str(index_dir / "bm25"))

    def search(text: str) -> Any:
        tokens = bm25s.tokenize(
            [text], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )
        return model.retrieve(tokens, k=20, show_progress=False)

    return search


def raw_dense(index_dir: Path) -> Any:
    import faiss
    from sentence_transformers import SentenceTransformer

    from ragline.models import resolve_packaged

    model = SentenceTransformer(str(resolve_packaged("minilm-l6")), device="cpu")
    index = faiss.read_index(str(index_dir / "dense" / "index.faiss"))

    def search(text: str) -> Any:
        vec = model.encode(
            [text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return index.search(vec, 20)

    return search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument(
        "--questions", type=int, default=None, help="Use the first N questions (default all)."
    )
    args = parser.parse_args()

    docs = list(read_documents([args.data / "nq_corpus.jsonl.gz"]))
    questions = load_questions(args.data / "nq_questions.jsonl.gz", args.questions)
    results: dict[str, Any] = {"methods": {}, "indexing": {}, "overhead": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results["indexing"]["bm25"] = build(docs, root / "bm25", ["bm25"])
        for kind in ("flat", "hnsw", "ivf"):
            methods = ["bm25", "dense"] if kind == "flat" else ["dense"]
            key = "bm25+dense-flat" if kind == "flat" else f"dense-{kind}"
            results["indexing"][key] = build(docs, root / kind, methods, {"index": kind})
        stages = {
            "bm25": BM25Retriever(index=str(root / "bm25"), top_k=20),
            "dense-flat": DenseRetriever(index=str(root / "flat"), top_k=20),
            "dense-hnsw": DenseRetriever(index=str(root / "hnsw"), top_k=20),
            "dense-ivf": DenseRetriever(index=str(root / "ivf"), top_k=20),
            "hybrid": HybridRetriever(index=str(root / "flat"), top_k=20),
            "hybrid-100": HybridRetriever(index=str(root / "flat"), top_k=20, candidates=100),
            "hybrid-weighted": HybridRetriever(
                index=str(root / "flat"), top_k=20, fusion="weighted"
            ),
        }
        for name, stage in stages.items():
            stage.warm_up()
            results["methods"][name] = evaluate(stage, questions)
        results["overhead"]["bm25"] = raw_vs_ours(
            raw_bm25(root / "bm25"), stages["bm25"], questions
        )
        results["overhead"]["dense-flat"] = raw_vs_ours(
            raw_dense(root / "flat"), stages["dense-flat"], questions
        )
        for stage in stages.values():
            stage.close()

    print(f"{len(docs)} passages, {len(questions)} questions\n")
    print(f"{'method':<12} {'R@1':>6} {'R@5':>6} {'R@20':>6} {'median ms':>10}")
    for name, r in results["methods"].items():
        rec = r["recall"]
        print(
            f"{name:<12} {rec['@1']:>6.3f} {rec['@5']:>6.3f} {rec['@20']:>6.3f} {r['latency_s']['median'] * 1e3:>10.2f}"
        )
    print(f"\n{'index':<16} {'seconds':>8} {'passages/s':>11}")
    for name, r in results["indexing"].items():
        print(f"{name:<16} {r['seconds']:>8.1f} {r['passages_per_second']:>11.0f}")
    print(
        f"\n{'overhead':<12} {'raw ms':>8} {'ragline ms':>11} {'ratio (median)':>15} {'ratio (total)':>14}"
    )
    for name, r in results["overhead"].items():
        print(
            f"{name:<12} {r['raw_s']['median'] * 1e3:>8.3f} {r['ragline_s']['median'] * 1e3:>11.3f} "
            f"{r['ratio_median']:>15.3f} {r['ratio_total']:>14.3f}"
        )
    m = results["methods"]
    best_child = max(m["bm25"]["recall"]["@20"], m["dense-flat"]["recall"]["@20"])
    checks = {
        "hybrid_recall@20_at_least_best_child": m["hybrid"]["recall"]["@20"] >= best_child,
        "bm25_overhead_at_most_1.15": results["overhead"]["bm25"]["ratio_median"] <= 1.15,
        "dense_overhead_at_most_1.15": results["overhead"]["dense-flat"]["ratio_median"] <= 1.15,
    }
    print("\n" + "\n".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()))
    path = write_results(
        "retrieval",
        {
            "benchmark": "retrieval",
            "environment": environment(
                ("ragline", "torch", "transformers", "sentence-transformers", "faiss-cpu", "bm25s")
            ),
            "passages": len(docs),
            "questions": len(questions),
            **results,
            "checks": checks,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
