"""How many Triton compile variants the vertical-slash kernel needs for a spread of plans, on a CPU.

Triton specialises integer arguments on `== 1` and `% 16 == 0` and compiles one variant per
combination (seconds each on Hopper targets). Plan sizes (head slots, column counts, band sizes)
change with every calibration candidate and every layer of a mixed config, so the kernels mark
them `do_not_specialize`. This script counts the variants Triton's own argument binder would key
for 60 plan shapes of SmolLM2 at 8K (9 heads, head dim 64), with and without that marking, and
times one compile for an sm_90 target (no GPU needed: Triton compiles to cubin offline).

    python benchmarks/kernel_variants.py
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

# an empty cache, so the timed compile is a real one
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="ragline-triton-")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, environment


def _binder(kernel: Any, specialise_all: bool) -> Any:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    params = [copy.copy(p) for p in kernel.params]
    if specialise_all:
        for p in params:
            p.do_not_specialize = False
    return create_function_from_signature(
        kernel.signature, params, make_backend(GPUTarget("cuda", 90, 32))
    )


def _plan_args(n_slots: int, n_columns: int, band: tuple[int, int]) -> dict[str, Any]:
    t, q = torch.zeros(64, dtype=torch.int32), torch.zeros(64, dtype=torch.bfloat16)
    n, h, hk, d = 8192, 9, 3, 64
    return dict(Q=q, K=q, V=q, Out=q, LSE=t.float(), seq_lens=t, heads=t, prefix=t, cover=t,
                run_lo=t, run_hi=t, run_count=t, columns=t, column_count=t,
                s_qb=n * h * d, s_qh=d, s_qt=h * d, s_kb=n * hk * d, s_kh=d, s_kt=hk * d,
                s_vb=n * hk * d, s_vh=d, s_vt=hk * d, s_ob=n * h * d, s_oh=d, s_ot=h * d,
                s_lb=h * n, s_lh=n, n_tokens=n, n_slots=n_slots, n_cover=n // 64 + 1,
                n_runs=n // 64 + 1, n_columns=n_columns, n_mblocks=n // 128, group=h // hk,
                qk_scale=0.18, band_sinks=band[0], band_e_max=band[1], BANDED=band != (0, 0),
                BLOCK_M=128, BLOCK_N=64, HEAD_DIM=d, IEEE=False, WIDE=True, LAZY=False,
                DIAG_N=128)  # fmt: skip


def count_variants(specialise_all: bool) -> int:
    from ragline.kernels.vertical_slash.triton import _vertical_slash_kernel as kernel

    binder = _binder(kernel, specialise_all)
    names = [p.name for p in kernel.params]
    keys = set()
    for n_slots in (9, 8, 3, 1):  # heads on the kernel in a layer
        for n_columns in (64, 38, 22, 13, 1):  # vertical budgets of the calibration scales
            for band in ((0, 0), (64, 62), (0, 128)):  # general plan, A-shape, dense band
                args = _plan_args(n_slots, n_columns, band)
                keys.add(repr(binder(*[args[n] for n in names], debug=False)[1]))
    return len(keys)


def compile_seconds() -> float:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from ragline.kernels.vertical_slash.triton import _vertical_slash_kernel as kernel

    const = {"BANDED": False, "BLOCK_M": 128, "BLOCK_N": 64, "HEAD_DIM": 64, "IEEE": False,
             "WIDE": True, "LAZY": False, "DIAG_N": 128}  # fmt: skip
    names = [p.name for p in kernel.params]
    pointers = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "Out": "*bf16", "LSE": "*fp32",
                "cover": "*i8", "qk_scale": "fp32"}  # fmt: skip
    sig = {n: "constexpr" if n in const else pointers.get(n, "i32") for n in names}
    for n in ("seq_lens", "heads", "prefix", "run_lo", "run_hi", "run_count", "columns",
              "column_count"):  # fmt: skip
        sig[n] = "*i32"
    src = ASTSource(fn=kernel, signature=sig, constexprs={(names.index(k),): v for k, v in const.items()})  # fmt: skip
    start = time.perf_counter()
    triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "num_stages": 3})
    return time.perf_counter() - start


def main() -> None:
    plans = 4 * 5 * 3
    before, after = count_variants(specialise_all=True), count_variants(specialise_all=False)
    seconds = compile_seconds()
    print(f"vertical-slash kernel, {plans} plan shapes (SmolLM2 at 8K):")
    print(f"  compile variants, sizes specialised:     {before}")
    print(f"  compile variants, sizes not specialised: {after}")
    print(f"  one sm_90 compile on this CPU:           {seconds:.1f} s")
    payload = {**environment(packages=("ragline", "torch", "triton")), "plans": plans,
               "variants_specialised": before, "variants_not_specialised": after,
               "compile_seconds_sm90": seconds}  # fmt: skip
    path = RESULTS / "kernel_variants.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
