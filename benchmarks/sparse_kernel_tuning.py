"""Sparse kernel launch choices at a reference budget, alternated, beside cuDNN.

Llama-3-8B attention shape (32 query heads, 8 KV heads, head dim 128, bf16). `--case` picks the
pattern: `block_sparse` (top-100 blocks of 64), `vertical_slash` (banded 1000/6096) or `a_shape`
(128/3968). Per length, every variant (and cuDNN up to 256K) is timed in each of three rounds;
the table gives medians and each variant's time over the plain `KernelTuning()`'s. `default` is
what the op runs without a tuning (for block-sparse `BLOCK_SPARSE_TUNING` at this shape: on
Hopper the warp-specialised Gluon kernel; for vertical-slash and A-shape `VERTICAL_SLASH_TUNING`,
which takes it for these banded plans). `--variants` times a subset. Writes
`benchmarks/results/<case>_tuning_NAME.json`.

    PYTHONPATH=src python benchmarks/sparse_kernel_tuning.py --name h200 \\
        --lengths 16384,32768,65536,131072,262144,524288,1048576 [--case vertical_slash]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, write_results
from _sparse_cases import Case, banded_case, block_sparse_case
from ragline.kernels import KernelTuning
from sparse_prefill import dense_ms, qkv, time_ms

CASES: dict[str, Case] = {
    "block_sparse": block_sparse_case(100),
    "vertical_slash": banded_case(1000, 6096),
    "a_shape": banded_case(128, 3968, "a_shape"),
}
VARIANTS: dict[str, dict[str, KernelTuning | None]] = {
    "block_sparse": {
        "plain": KernelTuning(),
        "ahead": KernelTuning(ahead=True),
        "lazy": KernelTuning(lazy=True),
        "default": None,  # the op's own choice (BLOCK_SPARSE_TUNING)
        "pinned": KernelTuning(pinned=True),
        "pinned_ahead": KernelTuning(pinned=True, ahead=True),
        "lazy_ahead": KernelTuning(lazy=True, ahead=True),
        "warp_specialized": KernelTuning(warp_specialize=True),  # the Gluon kernel on Hopper
    },
    "vertical_slash": {
        "plain": KernelTuning(),
        "lazy": KernelTuning(lazy=True),
        "stages2": KernelTuning(num_stages=2),
        "lazy_stages2": KernelTuning(lazy=True, num_stages=2),
        "pinned": KernelTuning(pinned=True),
        "pinned_stages2": KernelTuning(pinned=True, num_stages=2),
        "default": None,  # the op's own choice (VERTICAL_SLASH_TUNING: Gluon for banded plans)
    },
}
VARIANTS["a_shape"] = VARIANTS["vertical_slash"]


def at_length(n: int, case: Case, variants: dict[str, KernelTuning | None]) -> dict:
    """One length: the variants and cuDNN in three alternated rounds, and each output's drift."""
    from torch.nn.attention import SDPBackend

    q, k, v = qkv(n)
    plan = case.build(q, k)
    base, _ = case.run(q, k, v, plan, tuning=KernelTuning())
    times: dict[str, list[float]] = {name: [] for name in variants}
    cudnn: list[float] = []
    for _ in range(3):
        if n <= 262144:  # beyond, one dense call takes seconds
            cudnn.append(dense_ms(q, k, v, SDPBackend.CUDNN_ATTENTION, n))
        for name, tuning in variants.items():
            times[name].append(time_ms(lambda t=tuning: case.run(q, k, v, plan, tuning=t)))
    plain = statistics.median(times["plain"])
    row: dict = {"seq_len": n, "ms": {}, "ratio_to_plain": {}, "max_abs_diff_to_plain": {}}
    for name, tuning in variants.items():
        row["ms"][name] = statistics.median(times[name])
        row["ratio_to_plain"][name] = row["ms"][name] / plain
        out, _ = case.run(q, k, v, plan, tuning=tuning)
        row["max_abs_diff_to_plain"][name] = (out.float() - base.float()).abs().max().item()
    row["rounds_ms"] = times
    if cudnn:
        row["cudnn_ms"] = statistics.median(cudnn)
        row["kernel_speedup_vs_cudnn"] = {
            name: row["cudnn_ms"] / ms for name, ms in row["ms"].items()
        }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--lengths", default="16384,32768,131072,262144,1048576")
    ap.add_argument("--case", choices=sorted(CASES), default="block_sparse")
    ap.add_argument("--variants", help="comma-separated subset (plain is always timed)")
    args = ap.parse_args()
    variants = VARIANTS[args.case]
    if args.variants:
        unknown = set(args.variants.split(",")) - set(variants)
        if unknown:
            ap.error(f"--variants: unknown {sorted(unknown)}; known: {sorted(variants)}")
        keep = {"plain", *args.variants.split(",")}
        variants = {name: t for name, t in variants.items() if name in keep}
    rows = []
    for n in [int(x) for x in args.lengths.split(",")]:
        rows.append(at_length(n, CASES[args.case], variants))
        torch.cuda.empty_cache()
        ratios = "  ".join(f"{k} {r:.3f}" for k, r in rows[-1]["ratio_to_plain"].items())
        print(f"{n:>8}  {ratios}  (plain {rows[-1]['ms']['plain']:.2f} ms)", flush=True)
    body = {
        **environment(("ragline", "torch", "triton")),
        "shape": {"heads": 32, "kv_heads": 8, "head_dim": 128, "dtype": "bfloat16"},
        "case": f"{CASES[args.case].pattern}/{CASES[args.case].indices}/{CASES[args.case].budget}",
        "what": "kernel (plan prebuilt) per launch variant, three alternated rounds, medians of "
        "CUDA-event timings; cuDNN dense causal in the same rounds",
        "results": rows,
    }
    print(write_results(f"{args.case}_tuning_{args.name}", body))


if __name__ == "__main__":
    main()
