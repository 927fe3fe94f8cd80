"""Index-building cost of the sparse-prefill patterns on the GPU, with a profile of block-sparse.

Llama-3-8B attention shape (32 query heads, 8 KV heads, head dim 128, bf16) at 128K and 16K:
wall time of `Case.build` (indices + plan) after warm-up, the host time to enqueue it, and the
CUDA kernels behind the block-sparse builder. Prints only; the device log of record is
`benchmarks/results/sparse_prefill_h100_index_profile.log`.

    PYTHONPATH=src python benchmarks/sparse_index_profile.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sparse_cases import banded_case, block_sparse_case

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


if __name__ == "__main__":
    main()
