"""Sparse prefill on the GPU: parity at full size, kernel speed and efficiency, end to end.

Llama-3-8B attention shape (32 query heads, 8 KV heads, head dim 128, bf16, batch 1; `--shape`
picks another, e.g. Gemma 3 12B's 16,8,256). Baselines
in the same run: SDPA's cuDNN and FlashAttention-2 backends (K/V repeated for them). Times are
medians of CUDA-event timings after warm-up; every input is >= 128 MB, past the 50 MB L2.

    PYTHONPATH=src python benchmarks/sparse_prefill.py --phases tune,parity,kernels,e2e \\
        --lengths 16384,32768,65536,131072 --out DIR
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment
from _sparse_cases import (
    Case,
    banded_case,
    block_sparse_case,
    dense_case,
    real_indices_case,
    reference_cases,
    sampled_parity,
)
from ragline.fsutil import atomic_write_text
from ragline.kernels import KernelTuning
from ragline.kernels.density import plan_density as density

H, H_KV, D = 32, 8, 128
START = time.time()
KERNEL_KW: dict[str, KernelTuning] = {}
REAL: dict[int, Case] = {}
"""Vertical-slash cases on a real model's estimated indices, by the length they were made at."""


def log(msg: str) -> None:
    print(f"[{time.time() - START:6.1f}s] {msg}", flush=True)


def time_ms(
    fn: Callable[[], Any], *, warmup: int = 1, budget_ms: float = 1500, max_reps: int = 20
) -> float:
    """Median of CUDA-event timings; repeats fit `budget_ms` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    while True:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
        if len(samples) >= max_reps or sum(samples) + samples[-1] > budget_ms:
            return statistics.median(samples)


def qkv(
    n: int, b: int = 1, dtype: torch.dtype = torch.bfloat16, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator(device="cuda").manual_seed(seed + n)
    q = torch.randn(b, H, n, D, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(b, H_KV, n, D, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(b, H_KV, n, D, device="cuda", dtype=dtype, generator=g)
    return q, k, v


def dense_ms(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: Any, n: int) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kx, vx = (x.repeat_interleave(H // H_KV, dim=1) for x in (k, v))

    def fn() -> Any:
        with sdpa_kernel([backend]):
            return torch.nn.functional.scaled_dot_product_attention(q, kx, vx, is_causal=True)

    big = n >= 524288
    # at 512K+ one call takes seconds: FA2 needs no warm-up (no plan); cuDNN builds its graph once
    warm = 0 if big and backend != SDPBackend.CUDNN_ATTENTION else 1
    try:
        return time_ms(
            fn, warmup=warm, budget_ms=2000 if not big else 1, max_reps=10 if not big else 1
        )
    except RuntimeError as err:  # a backend without this shape (head dim, say): no baseline
        log(f"dense {backend} n={n} unavailable: {str(err).splitlines()[0][:200]}")
        return float("nan")


# The last entry times the block-sparse score lookahead (`ahead`, off by default; it caps the
# stages at two, and vertical-slash ignores it).
TUNINGS = [
    KernelTuning(num_warps=8, num_stages=3, wide=True),  # the library default for head dim 128
    KernelTuning(num_warps=8, num_stages=4, wide=True),
    KernelTuning(num_warps=8, num_stages=2, wide=True),
    KernelTuning(num_warps=4, num_stages=3, wide=True),
    KernelTuning(num_warps=8, num_stages=3, wide=False),
    KernelTuning(num_warps=8, num_stages=3, wide=True, ahead=True),  # block-sparse lookahead
    KernelTuning(num_warps=8, num_stages=3, wide=True, ahead=True, lazy=True),  # its default
]
# Head dim 256 always runs 64-key steps in two stages (larger tiles pass shared memory): only
# the warp count is open.
TUNINGS_256 = [
    KernelTuning(num_warps=8, num_stages=2, wide=False),  # the library default
    KernelTuning(num_warps=4, num_stages=2, wide=False),
    KernelTuning(num_warps=16, num_stages=2, wide=False),
]


def op_of(case: Case) -> str:
    """The kernel a case runs on (tunings are chosen per kernel)."""
    return "block_sparse" if case.pattern == "block_sparse" else "vertical_slash"


def tuning_for(case: Case) -> dict[str, KernelTuning]:
    return {"tuning": KERNEL_KW[op_of(case)]} if op_of(case) in KERNEL_KW else {}


def tune(n: int) -> list[dict]:
    """Kernel launch choices on BS top-100, banded VS, A-shape and dense-through-our-kernel."""
    q, k, v = qkv(n)
    from torch.nn.attention import SDPBackend

    cudnn = dense_ms(q, k, v, SDPBackend.CUDNN_ATTENTION, n)
    cases = [block_sparse_case(100), banded_case(1000, 6096), banded_case(128, 3968, "a_shape"),
             dense_case(n)]  # fmt: skip
    plans = [case.build(q, k) for case in cases]
    rows = []
    for tuning in TUNINGS_256 if D == 256 else TUNINGS:
        for case, plan in zip(cases, plans, strict=True):
            try:
                ms = time_ms(lambda c=case, p=plan, t=tuning: c.run(q, k, v, p, tuning=t))
                dens = density(plan)
                rows.append({"case": f"{case.pattern}/{case.indices}/{case.budget}", "op": op_of(case),
                             "seq_len": n, **asdict(tuning), "kernel_ms": ms, "density": dens,
                             "rate_vs_cudnn": dens * cudnn / ms})  # fmt: skip
                log(f"tune n={n} {case.pattern}/{case.indices} {tuning}: {ms:.2f} ms "
                    f"rate {dens * cudnn / ms:.2f}")  # fmt: skip
            except Exception as err:
                rows.append({"case": f"{case.pattern}/{case.indices}/{case.budget}", "op": op_of(case),
                             "seq_len": n, **asdict(tuning), "error": repr(err)[:300]})  # fmt: skip
                log(f"tune {tuning} FAILED {err!r}")
    return rows


def tune_all(lengths: list[int]) -> list[dict]:
    rows = [r for n in lengths for r in tune(n)]
    choose(rows)
    return rows


def choose(rows: list[dict]) -> None:
    """Per kernel, the tuning with the least total of (time / best time) over its cases."""
    best = {}
    for r in rows:
        if "kernel_ms" in r:
            key = (r["case"], r["seq_len"])
            best[key] = min(best.get(key, float("inf")), r["kernel_ms"])
    for op in {r["op"] for r in rows}:
        score: dict[KernelTuning, float] = {}
        for r in rows:
            if r["op"] != op:
                continue
            t = KernelTuning(
                **{f: r[f] for f in ("num_warps", "num_stages", "wide", "lazy", "ahead")}
            )
            ratio = r["kernel_ms"] / best[(r["case"], r["seq_len"])] if "kernel_ms" in r else 1e9
            score[t] = score.get(t, 0.0) + ratio
        KERNEL_KW[op] = min(score, key=lambda t: score[t])
        log(f"chosen launch config for {op}: {KERNEL_KW[op]} (score {score[KERNEL_KW[op]]:.3f})")


def parity_heads() -> list[int]:
    """First, an early, a middle and the last head (0, 5, 17, 31 at the Llama shape)."""
    return sorted({0, min(5, H - 1), min(H // 2 + 1, H - 1), H - 1})


def parity(lengths: list[int]) -> list[dict]:
    rows = []
    for n in lengths:
        for b, dtype in [(1, torch.bfloat16)] + ([(2, torch.float16)] if n == lengths[1] else []):
            q, k, v = qkv(n, b=b, dtype=dtype, seed=7)
            for case in reference_cases():
                try:
                    plan = case.build(q, k)
                    if b == 2:  # per-sequence lengths: the second sequence is shorter
                        plan = type(plan)(
                            **{
                                **plan.__dict__,
                                "seq_lens": torch.tensor(
                                    [n, n - 777], device="cuda", dtype=torch.int32
                                ),
                            }
                        )
                    out = torch.full_like(q, float("nan"))
                    out, _ = case.run(q, k, v, plan, out=out, **tuning_for(case))
                    torch.cuda.synchronize()
                    row = {"pattern": case.pattern, "indices": case.indices, "seq_len": n, "batch": b,
                           "dtype": str(dtype).removeprefix("torch."), "density": density(plan),
                           "nan_in_output": bool(torch.isnan(out[0]).any()) or bool(torch.isnan(out[-1, :, : int(plan.seq_lens[-1])]).any()),
                           **sampled_parity(case, plan, q, k, v, out, heads=parity_heads())}  # fmt: skip
                    if b == 2:
                        row["seq_lens"] = [n, n - 777]
                    rows.append(row)
                    log(
                        f"parity {case.pattern}/{case.indices} n={n} b={b} {row['dtype']}: "
                        f"rel {row['rel_err_vs_ref']:.2e} max {row['max_abs_err_vs_ref']:.2e}"
                    )
                except Exception as err:
                    rows.append({"pattern": case.pattern, "seq_len": n, "error": repr(err)[:300]})
                    log(
                        f"parity {case.pattern} n={n} FAILED {err!r}\n{traceback.format_exc()[-800:]}"
                    )
            torch.cuda.empty_cache()
    return rows


def kernels(lengths: list[int], sweep_at: set[int], deadline: float) -> list[dict]:
    rows: list[dict] = []
    for n in lengths:
        if time.time() - START > deadline:
            rows.append({"seq_len": n, "skipped": "time box"})
            continue
        rows += _kernels_at(n, n in sweep_at)
        gc.collect()
        torch.cuda.empty_cache()
    return rows


def _kernels_at(n: int, sweep: bool) -> list[dict]:
    from torch.nn.attention import SDPBackend

    rows = []
    q, k, v = qkv(n)
    cudnn = dense_ms(q, k, v, SDPBackend.CUDNN_ATTENTION, n)
    fa2 = dense_ms(q, k, v, SDPBackend.FLASH_ATTENTION, n)
    log(f"dense n={n}: cuDNN {cudnn:.1f} ms, FA2 {fa2:.1f} ms")
    cases: list[Case] = reference_cases()
    if n > 262144:  # random q/k make estimated vertical-slash nearly dense: seconds per call here
        cases = [c for c in cases if c.indices != "estimated_random"]
    if n in REAL:
        cases.append(REAL[n])
    if sweep:
        cases += [block_sparse_case(400), block_sparse_case(1000), banded_case(1000, 30000),
                  dense_case(n)]  # fmt: skip
    for case in cases:
        try:
            plan = case.build(q, k)
            dens = density(plan)
            kw = tuning_for(case)
            kernel = time_ms(lambda c=case, p=plan, kw=kw: c.run(q, k, v, p, **kw))
            total = time_ms(lambda c=case, kw=kw: c.run(q, k, v, c.build(q, k), **kw))
            rows.append({
                "pattern": case.pattern, "indices": case.indices, "budget": case.budget,
                "seq_len": n, "density": dens, "sparse_ms": total, "kernel_ms": kernel,
                "index_ms": max(0.0, total - kernel), "cudnn_ms": cudnn, "fa2_ms": fa2,
                "speedup_vs_cudnn": cudnn / total, "speedup_vs_fa2": fa2 / total,
                "rate_vs_cudnn": dens * cudnn / kernel,
            })  # fmt: skip
            r = rows[-1]
            log(f"{case.pattern}/{case.indices} n={n}: {total:.2f} ms (kernel {kernel:.2f}) "
                f"density {dens:.3f} x{r['speedup_vs_cudnn']:.2f} cuDNN rate {r['rate_vs_cudnn']:.2f}")  # fmt: skip
        except Exception as err:
            rows.append({"pattern": case.pattern, "indices": case.indices, "seq_len": n, "error": repr(err)[:300]})  # fmt: skip
            log(f"{case.pattern}/{case.indices} n={n} FAILED {err!r}")
    return rows


def main() -> None:
    global H, H_KV, D
    ap = argparse.ArgumentParser()
    ap.add_argument("--phases", default="tune,parity,kernels,e2e")
    ap.add_argument("--lengths", default="16384,32768,65536,131072")
    ap.add_argument("--parity-lengths", default="1000,4097,16411,65536,131072")
    ap.add_argument("--e2e-lengths", default="32768,131072,262144")
    ap.add_argument("--sweep-at", default="65536,131072")
    ap.add_argument("--tune-at", default="16384,131072", help="lengths the tunings are chosen on")
    ap.add_argument(
        "--deadline", type=float, default=480.0, help="seconds; later phases are skipped"
    )
    ap.add_argument(
        "--real-indices",
        action="append",
        default=[],
        help="vertical-slash indices a real model produced (real_density.py's .json.gz); "
        "timed at their length when it is among --lengths",
    )
    ap.add_argument(
        "--shape",
        default=f"{H},{H_KV},{D}",
        help="query heads, key/value heads, head dim (default: Llama-3-8B's; Gemma 3 12B: 16,8,256)",
    )
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    shape = ints(args.shape)
    if len(shape) != 3 or shape[0] % shape[1]:
        ap.error(f"--shape {args.shape}: expected H,H_KV,D with H_KV dividing H")
    phases = set(args.phases.split(","))
    if "e2e" in phases and shape != [H, H_KV, D]:
        ap.error("--shape applies to tune, parity and kernels; e2e builds a Llama-3-8B model")
    H, H_KV, D = shape
    for path in args.real_indices:
        n, case = real_indices_case(path)
        REAL[n] = case
    env = environment(packages=("ragline", "torch", "transformers", "triton"))
    device = torch.cuda.get_device_name()
    payload: dict[str, Any] = {"device": device, "date": env["date"], "versions": env["versions"],
                               "command": env["command"], "shape": {"heads": H, "kv_heads": H_KV, "head_dim": D, "dtype": "bfloat16", "batch": 1}}  # fmt: skip
    payload["block_sparse_kernel"] = block_sparse_kernel_in_use()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.name or ("h100" if "H100" in device else "h200" if "H200" in device else "gpu")
    path = out / f"sparse_prefill_{tag}.json"

    def save() -> None:
        atomic_write_text(path, json.dumps(payload, indent=1) + "\n")

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("tune", lambda: tune_all(ints(args.tune_at))),
        ("parity", lambda: parity(ints(args.parity_lengths))),
        ("results", lambda: kernels(ints(args.lengths), set(ints(args.sweep_at)), args.deadline)),
        ("e2e", lambda: __import__("_sparse_e2e").run_e2e(ints(args.e2e_lengths), lambda: time.time() - START > args.deadline, log)),
    ]  # fmt: skip
    for key, fn in steps:
        phase = "kernels" if key == "results" else key
        if phase not in phases:
            continue
        if time.time() - START > args.deadline:
            payload[key] = [{"skipped": "time box"}]
            continue
        try:
            payload[key] = fn()
        except Exception as err:
            payload[key] = [{"error": repr(err)[:500], "traceback": traceback.format_exc()[-1500:]}]
            log(f"phase {key} FAILED: {err!r}")
        payload["launch_config"] = {k: asdict(t) for k, t in KERNEL_KW.items()}
        save()
    summary(payload)


def block_sparse_kernel_in_use() -> str:
    """Which block-sparse kernel the default tuning runs on this GPU at the benchmark's shape."""
    from ragline.kernels.block_sparse import block_sparse_warp_specialized_refusal

    q, k, _ = qkv(1024)
    why = block_sparse_warp_specialized_refusal(q, k, block_sparse_case(100).build(q, k))
    return "gluon, warp-specialised" if why is None else f"triton: the Gluon kernel refused ({why})"


def summary(payload: dict[str, Any]) -> None:
    print("\npattern/indices            n     density  sparse_ms  cudnn_ms  x_cudnn  x_fa2  rate")
    for r in payload.get("results", []):
        if "sparse_ms" in r:
            print(f"{r['pattern'] + '/' + r['indices']:24s} {r['seq_len']:>7d} {r['density']:8.3f} "
                  f"{r['sparse_ms']:9.2f} {r['cudnn_ms']:9.1f} {r['speedup_vs_cudnn']:7.2f} "
                  f"{r['speedup_vs_fa2']:6.2f} {r['rate_vs_cudnn']:5.2f}")  # fmt: skip
    for r in payload.get("e2e", []):
        if "speedup" in r:
            print(
                f"e2e {r['pattern']:16s} {r['seq_len']:>7d} dense {r['dense_s']:.2f}s sparse {r['sparse_s']:.2f}s x{r['speedup']:.2f}"
            )


if __name__ == "__main__":
    main()
