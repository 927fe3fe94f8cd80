"""Index-building cost of the sparse-prefill patterns on the GPU, with a profile of block-sparse.

Llama-3-8B attention shape (32 query heads, 8 KV heads, head dim 128, bf16) at 128K and 16K:
wall time of `Case.build` (indices + plan) after warm-up, the host time to enqueue it, and the
CUDA kernels behind the block-sparse builder. Prints only; the device log of record is
`benchmarks/results/sparse_prefill_h100_index_profile.log`.

    PYTHONPATH=src python benchmarks/sparse_index_profile.py

`--bands NAME` instead times the block-sparse build (top-100) in row bands (forced at every
length; the library bands from 256K) against one whole score matrix, alternated three times per
length, checks that both give the same indices (ranked and not), and writes
`benchmarks/results/sparse_index_bands_NAME.json`:

    PYTHONPATH=src python benchmarks/sparse_index_profile.py --bands h200

`--topk NAME` times the same build with the `row_topk` kernel against `torch.topk`, checks
identical indices and the kernel against its reference, and writes
`benchmarks/results/sparse_index_topk_NAME.json`.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ragline.attention.patterns as patterns
from _common import environment, write_results
from _sparse_cases import banded_case, block_sparse_case
from ragline.attention.patterns import block_sparse_indices
from sparse_prefill import qkv, time_ms

H, H_KV, D = 32, 8, 128


def main() -> None:
    for n in (131072, 16384):
        g = torch.Generator(device="cuda").manual_seed(n)
        q = torch.randn(1, H, n, D, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(1, H_KV, n, D, device="cuda", dtype=torch.bfloat16, generator=g)
        cases = (block_sparse_case(100), banded_case(1000, 6096), banded_case(128, 3968, "a_shape"))
        for case in cases:
            for _ in range(3):
                case.build(q, k)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(10):
                case.build(q, k)
            host = (time.perf_counter() - t0) / 10
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            for _ in range(10):
                case.build(q, k)
            torch.cuda.synchronize()
            wall = (time.perf_counter() - t1) / 10
            print(f"index n={n} {case.pattern}/{case.indices}: wall {wall * 1e3:.2f} ms, "
                  f"host enqueue {host * 1e3:.2f} ms", flush=True)  # fmt: skip
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                block_sparse_case(100).build(q, k)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12), flush=True)


def _alternated(
    build: Callable[[], Any], variants: Sequence[tuple[str, Callable[[], None]]]
) -> dict[str, list[float]]:
    """Milliseconds of `build` under each variant (its setter runs first), alternated 3 times."""
    timed: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(3):
        for name, use in variants:
            use()
            timed[name].append(time_ms(build))
    return timed


def _row(
    n: int, timed: dict[str, list[float]], base: str, new: str, **facts: Any
) -> dict[str, Any]:
    """One length's results: the facts, each variant's timings and `new`/`base` medians, printed."""
    mid = {v: statistics.median(t) for v, t in timed.items()}
    row = {"seq_len": n, **facts, **{f"{v}_ms": t for v, t in timed.items()}}
    row["ratio"] = mid[new] / mid[base]
    shown = " ".join(f"{key}={value}" for key, value in facts.items())
    print(f"n={n:>8} {shown}  {base} {mid[base]:8.2f} ms  {new} {mid[new]:8.2f} ms  "
          f"x{row['ratio']:.3f}", flush=True)  # fmt: skip
    return row


def _write(name: str, what: str, rows: list[dict[str, Any]], **extra: Any) -> None:
    """Write a comparison's results file, with the environment and the attention shape."""
    shape = {"heads": 32, "kv_heads": 8, "head_dim": 128, "dtype": "bfloat16"}
    body = {**environment(("ragline", "torch", "triton")), "shape": shape, "what": what}
    print(write_results(name, {**body, **extra, "results": rows}))


def _compare(
    attr: str,
    variants: Sequence[tuple[str, Any]],
    lengths: Sequence[int],
    *,
    ranked: bool,
    facts_at: Callable[[int], dict[str, Any]] = lambda n: {},
) -> list[dict[str, Any]]:
    """Block-sparse top-100 index build with `patterns.<attr>` set to each variant's value:
    identical indices (and ranked ones) and alternated timings per length, `variants[0]` the base.
    """
    case = block_sparse_case(100)
    saved = getattr(patterns, attr)
    (base, _), (new, _) = variants
    rows: list[dict[str, Any]] = []
    try:
        for n in lengths:
            q, k, _v = qkv(n)
            got: dict[str, list[torch.Tensor]] = {}
            for variant, value in variants:
                setattr(patterns, attr, value)
                got[variant] = [block_sparse_indices(q, k, 100).sort(-1).values]
                if ranked:
                    got[variant].append(block_sparse_indices(q, k, 100, ranked=True))
            facts = {"identical_indices": torch.equal(got[base][0], got[new][0])}
            if ranked:
                facts["identical_ranked_indices"] = torch.equal(got[base][1], got[new][1])
            del got
            build = functools.partial(case.build, q, k)
            setters = [(v, functools.partial(setattr, patterns, attr, x)) for v, x in variants]
            timed = _alternated(build, setters)
            setattr(patterns, attr, saved)
            rows.append(_row(n, timed, base, new, **facts_at(n), **facts))
            del q, k, _v, build
            torch.cuda.empty_cache()
    finally:
        setattr(patterns, attr, saved)
    return rows


BAND_LENGTHS = (65536, 131072, 262144, 524288, 1048576)


def compare_bands(name: str) -> None:
    """Block-sparse index build in row bands (at every length) against one whole score matrix."""
    rows = _compare(
        "_BAND_ELEMENTS",
        [("whole", 1 << 62), ("bands", 1)],  # the bands variant bands at every length
        BAND_LENGTHS,
        ranked=True,
        facts_at=lambda n: {
            "banded_by_default": patterns._bands(-(-n // 128), -(-n // 64), 2, 1) != [None]
        },
    )
    _write(
        f"sparse_index_bands_{name}",
        "block-sparse top-100 index build (indices + plan), ms per call: one whole score matrix "
        "vs eight row bands (forced at every length; the library bands where banded_by_default), "
        "alternated; medians of CUDA-event timings",
        rows,
    )


TOPK_LENGTHS = (16384, 32768, 65536, 131072, 262144, 1048576)


def compare_topk(name: str) -> None:
    """Block-sparse index build with the `row_topk` kernel against `torch.topk`, and the kernel
    against its reference on random rows of odd widths, on the GPU."""
    from ragline.kernels.row_topk import row_topk, row_topk_ref

    parity = []
    g = torch.Generator(device="cuda").manual_seed(0)
    for rows, width, k in ((1000, 37, 5), (4097, 301, 98), (333, 2047, 98), (77, 4096, 1000)):
        scores = torch.randn(rows, width, device="cuda", generator=g)
        scores[::5, :7] = float("-inf")
        scores[::7, 3] = 0.5  # ties
        scores[::7, 9] = 0.5
        same = torch.equal(row_topk(scores, k).cpu(), row_topk_ref(scores.cpu(), k))
        parity.append({"rows": rows, "width": width, "k": k, "equal_to_reference": same})
        print(f"row_topk {rows}x{width} k={k}: equal to reference {same}", flush=True)
    pick = patterns._row_topk_kernel_for
    rows_out = _compare(
        "_row_topk_kernel_for", [("torch", lambda q, w: False), ("kernel", pick)], TOPK_LENGTHS,
        ranked=False,
    )  # fmt: skip
    _write(
        f"sparse_index_topk_{name}",
        "block-sparse top-100 index build (indices + plan), ms per call: torch.topk vs the "
        "row_topk kernel (rows up to 4096 wide; wider take torch.topk), alternated; medians of "
        "CUDA-event timings; row_topk vs its reference on the GPU",
        rows_out,
        row_topk_parity=parity,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bands", metavar="NAME", help="compare row bands; write results as NAME")
    ap.add_argument("--topk", metavar="NAME", help="compare row_topk; write results as NAME")
    args = ap.parse_args()
    if args.bands:
        compare_bands(args.bands)
    elif args.topk:
        compare_topk(args.topk)
    else:
        main()
