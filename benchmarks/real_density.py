"""Realistic density: the reference-budget patterns and calibrated mixes on a real model's queries and keys.

Random queries and keys make estimated vertical-slash nearly dense, so speed measured on them is
not what users get. This reads one held-out document (NQ passages from the end of the corpus)
at the model's longest context, captures the post-RoPE queries and keys of its full-attention
layers in a dense pass, and reports per pattern the density the kernels would compute (tiles,
per head) and the softmax mass kept (recall): the reference budgets (vertical-slash 1000/6096
estimated from the last 64 queries, block-sparse top-100, A-shape 128 + 3968), calibrated mixes
at several budgets (calibrated on this same document: in-sample), and any `--config` written by
`ragline calibrate` on other text (held-out). It also writes the estimated vertical-slash
indices, so `sparse_prefill.py --real-indices` can time the kernel on index sets a real model
produced rather than on random ones.

    PYTHONPATH=src python benchmarks/real_density.py --model gemma3-270m --seq-len 32768 \\
        --config benchmarks/results/gemma3-270m_32k_budget0.2.json
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
from ragline.attention.calibrate import _plan, calibrate_model, recall_and_tail
from ragline.attention.config import AShape, BlockSparse, HeadPattern, VerticalSlash
from ragline.attention.hf import capture_queries_keys
from ragline.attention.patterns import vertical_slash_indices
from ragline.cli.calibrate import opening_tokens
from ragline.fsutil import atomic_write_text
from ragline.kernels.density import plan_density_per_slot
from ragline.models.loader import load_causal_lm
from sparse_fidelity import long_documents, pattern_stats

START = time.time()
REFERENCE: list[tuple[str, HeadPattern]] = [
    ("estimated_real", VerticalSlash(vertical=1000, slash=6096)),
    ("estimated_real", BlockSparse(top_k=100)),
    ("fixed", AShape(sinks=128, window=3968)),
]


def log(msg: str) -> None:
    print(f"[{time.time() - START:7.1f}s] {msg}", file=sys.stderr, flush=True)


def reference_rows(layers_qk: list, model: str, seq_len: int) -> list[dict[str, Any]]:
    """Density and recall of each reference pattern, per head and averaged over all heads."""
    stats: list[tuple[list[float], list[float], list[float]]] = [([], [], []) for _ in REFERENCE]
    for q, k in layers_qk:
        plans = [_plan(q, k, pattern) for _, pattern in REFERENCE]
        recs, tails = recall_and_tail(q, k, plans, 64)  # one dense softmax per head for all
        for (rec, tail, dens), plan, r, t in zip(stats, plans, recs, tails, strict=True):
            rec += r.tolist()
            tail += t.tolist()
            dens += plan_density_per_slot(plan)
    rows = []
    for (indices, pattern), (rec, tail, dens) in zip(REFERENCE, stats, strict=True):
        sizes = pattern.model_dump(exclude={"recall", "pattern"})
        rows.append({
            "model": model, "seq_len": seq_len, "pattern": pattern.pattern, "sizes": sizes,
            "indices": indices, "density": sum(dens) / len(dens),
            "attention_recall": sum(rec) / len(rec), "tail_recall": sum(tail) / len(tail),
            "per_head": {"density": dens, "attention_recall": rec},
        })  # fmt: skip
        log(f"{pattern.pattern} {sizes}: density {rows[-1]['density']:.3f} "
            f"recall {rows[-1]['attention_recall']:.4f}")  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--seq-len", type=int, default=32768)
    ap.add_argument(
        "--budgets",
        default="",
        help="in-sample calibrated mixes (slow on a CPU: ~25 min each at 32K)",
    )
    ap.add_argument("--config", action="append", default=[], help="held-out configs to score")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--name", default=None, help="label for files (default: the model name)")
    args = ap.parse_args()
    from ragline.attention.config import load_pattern_config

    name = args.name or Path(args.model).stem
    tag = f"{name}_{args.seq_len // 1024}k"
    configs = [load_pattern_config(c) for c in args.config]  # fail before the long capture
    env = environment(packages=("ragline", "torch", "transformers"))
    lm = load_causal_lm(args.model, dtype=args.dtype, device=args.device)
    cfg = lm.model.config
    kinds = getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers
    full = [i for i, kind in enumerate(kinds) if kind == "full_attention"]
    # as prompts are prefilled: with the special tokens the tokenizer opens one with (<bos>)
    opening = torch.tensor([opening_tokens(lm.tokenizer)], dtype=torch.long)
    (doc,) = long_documents(lm.tokenizer, 1, args.seq_len - opening.shape[1])
    doc = torch.cat([opening, doc], 1)
    log(f"{name}: capturing layers {full} of {len(kinds)} at {doc.shape[1]} tokens")
    qk = capture_queries_keys(lm.model, doc.to(lm.device))
    layers_qk = [(qk[i][0].float(), qk[i][1].float()) for i in full]
    del qk
    t = layers_qk[0][0].shape[2]
    log("captured")

    rows = reference_rows(layers_qk, name, t)
    calibrated = []
    for budget in [float(b) for b in args.budgets.split(",") if b]:
        _, report = calibrate_model([layers_qk], name, t, budget)
        calibrated.append({
            "model": name, "seq_len": t, "pattern": "minference (calibrated mix, shared budget)",
            "indices": "estimated_real", "budget": budget, "in_sample": True,
            "density": report["chosen_mean_density"], "attention_recall": report["chosen_mean_recall"],
            "tail_recall": report["chosen_tail_recall"], "heads_per_pattern": report["chosen_patterns"],
            "candidates": report["candidates"],
        })  # fmt: skip
        log(f"budget {budget}: density {report['chosen_mean_density']:.3f} "
            f"recall {report['chosen_mean_recall']:.4f} {report['chosen_patterns']}")  # fmt: skip
    held_out = []
    for path, pcfg in zip(args.config, configs, strict=True):
        sub = pcfg.model_copy(update={"layers": [pcfg.layers[i] for i in full]})
        per_pattern, overall = pattern_stats(sub, layers_qk, log)
        held_out.append({
            "model": name, "seq_len": t, "pattern": "minference (calibrated mix, shared budget)",
            "indices": "estimated_real", "budget": pcfg.budget, "in_sample": False, "config": path,
            "calibrated_at": pcfg.seq_len, "density": overall["density"],
            "attention_recall": overall["attention_recall"], "tail_recall": overall["tail_recall"],
            "per_pattern": per_pattern,
        })  # fmt: skip

    # The reference vertical-slash indices per full-attention layer and head, for the device.
    vs = REFERENCE[0][1]
    assert isinstance(vs, VerticalSlash)
    estimated = []
    for q, k in layers_qk:
        v_idx, s_idx = vertical_slash_indices(q, k, vs.vertical, vs.slash)
        estimated.append({"vertical": v_idx[0].tolist(), "slash": s_idx[0].tolist()})
    indices_path = RESULTS / f"real_vs_indices_{tag}.json.gz"
    payload = {"model": name, "seq_len": t, "layers": full, "vertical": vs.vertical,
               "slash": vs.slash, "heads": estimated}  # fmt: skip
    tmp = indices_path.with_suffix(".tmp")
    try:
        with gzip.open(tmp, "wt") as fh:
            json.dump(payload, fh)
        tmp.replace(indices_path)
    finally:
        tmp.unlink(missing_ok=True)

    out = RESULTS / f"real_density_{tag}.json"
    result = {
        "benchmark": "real_density", **env, "model": name, "seq_len": t,
        "full_attention_layers": full, "layers": len(kinds),
        "document": "held out: NQ passages from the end of the corpus, concatenated",
        "reference": rows, "calibrated_in_sample": calibrated, "held_out_configs": held_out,
        "vs_indices_file": str(indices_path.relative_to(RESULTS.parent.parent)),
        "seconds": round(time.time() - START, 1),
    }  # fmt: skip
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    log(f"wrote {out} and {indices_path}")


if __name__ == "__main__":
    main()
