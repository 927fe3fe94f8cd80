"""Fidelity of calibrated sparse prefill on real weights (SmolLM2-135M-Instruct, CPU).

On held-out long documents (NQ passages from the end of the corpus, concatenated to the model's
8K context): per-head attention-mass recall and density of the chosen patterns on the real
queries and keys, relative error of every layer's output versus dense, next-token top-1
agreement at every position; then identical greedy answers on NQ prompts (gold passage among
distractors) versus dense. Sparse prefill is forced on (min_len=1); on CPU the ops run their
PyTorch mask references, which the kernels equal (tests/kernels, device parity).

    PYTHONPATH=src python benchmarks/sparse_fidelity.py --config src/ragline/attention/configs/smollm2-135m-instruct.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, environment
from ragline.attention.calibrate import _plan, recall_and_tail
from ragline.attention.config import (
    Dense,
    SparsePrefillConfig,
    VerticalSlash,
    load_pattern_config,
)
from ragline.attention.hf import (
    capture_queries_keys,
    install_sparse_prefill,
    uninstall_sparse_prefill,
)
from ragline.attention.sparse import SparsePrefill
from ragline.kernels import plan_banded
from ragline.kernels.density import plan_density, plan_density_per_slot

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():  # on the device machine the data travels inside the checkout
    DATA = Path(__file__).resolve().parents[1] / "_data"


def _corpus() -> list[dict]:
    with gzip.open(DATA / "nq_corpus.jsonl.gz", "rt") as fh:
        return [json.loads(line) for line in fh]


def long_documents(tok: Any, n_docs: int, seq_len: int) -> list[torch.Tensor]:
    """Held-out: passages from the end of the corpus (calibration reads from the start)."""
    docs, ids = [], []
    for row in reversed(_corpus()):
        ids += tok(f"{row['title']}\n{row['text']}\n\n", add_special_tokens=False).input_ids
        if len(ids) >= seq_len:
            docs.append(torch.tensor([ids[:seq_len]]))
            ids = []
            if len(docs) == n_docs:
                break
    return docs


def pattern_stats(
    cfg: SparsePrefillConfig, layers_qk: dict[int, tuple], log: Any
) -> tuple[list[dict], dict[str, float]]:
    """Per distinct pattern and overall: recall, last-64-row recall and density of each head.

    `layers_qk` maps the layers sparse prefill runs (the full-attention ones) to their queries
    and keys; sliding-window layers keep the model's own window and are not counted.
    """
    per: dict[str, list[tuple[float, float, float]]] = {}
    for layer, (q, k) in layers_qk.items():
        chosen = cfg.layers[layer]
        patterns = list({p.model_copy(update={"recall": None}) for p in chosen})
        plans = []
        for pattern in patterns:
            if isinstance(pattern, Dense):  # every key: all the mass, every causal tile
                lens = torch.full((1,), q.shape[2], dtype=torch.int32, device=q.device)
                heads = torch.arange(q.shape[1], device=q.device)
                plans.append(plan_banded(0, q.shape[2], lens, q.shape[2], heads))
            else:
                plans.append(_plan(q, k, pattern))
        # one call: on a CPU each head's dense softmax is computed once for all the plans
        recs, tails = recall_and_tail(q, k, plans, 64)
        for pattern, plan, rec, tail in zip(patterns, plans, recs, tails, strict=True):
            dens = plan_density_per_slot(plan)
            for h, p in enumerate(chosen):
                if p.model_copy(update={"recall": None}) == pattern:
                    per.setdefault(pattern.pattern, []).append(
                        (float(rec[h]), float(tail[h]), dens[h])
                    )
        n = sum(len(v) for v in per.values())
        log(f"layer {layer}: recall so far {sum(x[0] for v in per.values() for x in v) / n:.4f}")

    def means(v: list[tuple[float, float, float]]) -> dict[str, float]:
        return {key: sum(x[i] for x in v) / len(v)
                for i, key in enumerate(("attention_recall", "tail_recall", "density"))}  # fmt: skip

    rows = [{"pattern": name, "heads": len(v), **means(v)} for name, v in per.items()]
    return rows, means([x for v in per.values() for x in v])


def nq_prompts(tok: Any, n: int, distractors: int) -> list[tuple[str, list[str], torch.Tensor]]:
    corpus = _corpus()
    by_id = {r["id"]: r for r in corpus}
    with gzip.open(DATA / "nq_questions.jsonl.gz", "rt") as fh:
        questions = [json.loads(line) for line in fh][:n]
    out = []
    for i, q in enumerate(questions):
        docs = [corpus[(i * 37 + j * 101) % len(corpus)] for j in range(distractors)]
        docs.insert(len(docs) // 2, by_id[q["gold_id"]])
        ctx = "\n\n".join(
            f"Document [{j + 1}] {d['title']}\n{d['text']}" for j, d in enumerate(docs)
        )
        msg = f"Answer the question from the documents, in a few words.\n\n{ctx}\n\nQuestion: {q['question']}"
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": msg}], tokenize=False, add_generation_prompt=True
            )
        else:  # a base model: the question, then a cue
            text = f"{tok.bos_token or ''}{msg}\nAnswer:"
        out.append(
            (
                q["question"],
                q["answers"],
                tok(text, return_tensors="pt", add_special_tokens=False).input_ids,
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--docs", type=int, default=1)
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--distractors", type=int, default=14)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument(
        "--no-recall", action="store_true", help="skip held-out recall/density (slow on CPU)"
    )
    ap.add_argument(
        "--control",
        action="store_true",
        help="also run every head dense through the sparse kernels (the dtype's noise floor)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out", default=str(RESULTS / "sparse_fidelity_smollm2.json"))
    args = ap.parse_args()
    from ragline.generators.hf import decode_tokens
    from ragline.models.loader import load_causal_lm

    start = time.time()
    log = lambda m: print(f"[{time.time() - start:6.0f}s] {m}", flush=True)  # noqa: E731
    lm = load_causal_lm(args.model, dtype=args.dtype, device=args.device)
    model, tok = lm.model, lm.tokenizer
    cfg = load_pattern_config(args.config)
    runtime = SparsePrefill(cfg, min_len=1)
    kinds = getattr(model.config, "layer_types", None) or ["full_attention"] * len(cfg.layers)
    full = [i for i, kind in enumerate(kinds) if kind == "full_attention"]
    result: dict[str, Any] = {
        **environment(("ragline", "torch", "transformers")),
        "config": args.config,
        "model": args.model,
        "dtype": args.dtype,
        "full_attention_layers": full,
    }
    docs_out = []
    for doc in long_documents(tok, args.docs, args.seq_len):
        doc = doc.to(lm.device)
        stats: dict[str, Any] = {}
        if not args.no_recall:
            # on a GPU in the model's dtype, as prefill runs; the CPU references want float32
            layers_qk = {
                i: (q, k) if q.is_cuda else (q.float(), k.float())
                for i, (q, k) in enumerate(capture_queries_keys(model, doc))
                if i in full
            }
            rows, overall = pattern_stats(cfg, layers_qk, log)
            recall, dens = overall["attention_recall"], overall["density"]
            # the reference budget's vertical-slash on real versus random queries and keys
            vs = VerticalSlash(vertical=1000, slash=6096)
            q8, k8 = layers_qk[full[len(full) // 2]]
            real = _plan(q8, k8, vs)
            rand = _plan(torch.randn_like(q8), torch.randn_like(k8), vs)
            stats = {"patterns": rows, "mean_head_recall": recall, "mean_density": dens,
                     "mean_tail_recall_last_64_rows": overall["tail_recall"],
                     "vs_1000_6096_density_real_qk_layer": plan_density(real),
                     "vs_1000_6096_density_random_qk": plan_density(rand)}  # fmt: skip
        with torch.inference_mode():
            dense = model(input_ids=doc, output_hidden_states=True)
            install_sparse_prefill(model, runtime)
            sparse = model(input_ids=doc, output_hidden_states=True)
            uninstall_sparse_prefill(model, "sdpa")
        rel = [
            float((s.float() - d.float()).norm() / d.float().norm())
            for s, d in zip(sparse.hidden_states[1:], dense.hidden_states[1:], strict=True)
        ]
        agree = float((sparse.logits.argmax(-1) == dense.logits.argmax(-1)).float().mean())
        if args.control:
            # Same kernels, every head dense: what the dtype alone costs in top-1 agreement.
            layers = [[Dense()] * len(row) for row in cfg.layers]
            control = SparsePrefill(
                cfg.model_copy(update={"layers": layers}), min_len=1, dense_above=float("inf")
            )
            with torch.inference_mode():
                install_sparse_prefill(model, control)
                ctl = model(input_ids=doc)
                uninstall_sparse_prefill(model, "sdpa")
            stats["dense_through_kernels_top1_agreement"] = float(
                (ctl.logits.argmax(-1) == dense.logits.argmax(-1)).float().mean()
            )
        docs_out.append({"seq_len": doc.shape[1], **stats, "sparse_layer_calls": runtime.sparse_calls,
                         "layer_output_rel_err": rel, "max_layer_output_rel_err": max(rel),
                         "next_token_top1_agreement": agree})  # fmt: skip
        log(
            f"doc: recall {stats.get('mean_head_recall')} top1 {agree:.4f} max layer err {max(rel):.3e}"
        )
    result["documents"] = docs_out
    answers = []
    for question, gold, ids in nq_prompts(tok, args.questions, args.distractors):
        dense_ans = list(decode_tokens(lm, ids.to(lm.device), max_new_tokens=24))
        install_sparse_prefill(model, runtime)
        sparse_ans = list(decode_tokens(lm, ids.to(lm.device), max_new_tokens=24))
        uninstall_sparse_prefill(model, "sdpa")
        answers.append({"question": question, "prompt_tokens": ids.shape[1], "identical": dense_ans == sparse_ans,
                        "dense": tok.decode(dense_ans), "sparse": tok.decode(sparse_ans), "gold": gold})  # fmt: skip
        log(
            f"NQ {ids.shape[1]} tokens identical={dense_ans == sparse_ans}: {tok.decode(sparse_ans)!r}"
        )
    result["nq_greedy"] = {
        "questions": len(answers),
        "identical": sum(a["identical"] for a in answers),
        "answers": answers,
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
