"""The runtime's density guard on the GPU: an estimated vertical-slash layer whose plan is too dense.

Random queries and keys make the estimated 1000/6096 pattern cover nearly every tile (as real
Gemma 3 prompts nearly do at 32K), so the sparse kernel is slower than dense. The runtime layer
(`sparse_prefill_layer`, Llama-3-8B attention shape, bf16) is timed with the guard on
(`dense_above` 0.7: such heads run SDPA) and off, against cuDNN in the same run; with the guard
on, the output must equal SDPA's.

    PYTHONPATH=src python benchmarks/sparse_guard.py --lengths 32768,131072
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment
from ragline.attention.config import VerticalSlash, uniform_config
from ragline.attention.sparse import DENSE_ABOVE, SparsePrefill, _layer, sparse_prefill_layer
from ragline.fsutil import atomic_write_text
from sparse_prefill import H_KV, H, dense_ms, qkv, time_ms


def rows_at(n: int) -> list[dict]:
    """Guard on and off at `n` tokens, with cuDNN timed on the same inputs."""
    from torch.nn.attention import SDPBackend

    q, k, v = qkv(n)
    cudnn = dense_ms(q, k, v, SDPBackend.CUDNN_ATTENTION, n)
    pattern = VerticalSlash()
    lp = _layer([pattern] * H, q.device)
    scale = 1 / math.sqrt(q.shape[-1])
    rows = []
    for above in (DENSE_ABOVE, math.inf):
        rt = SparsePrefill(uniform_config("llama-3-8b-shaped", 1, H, pattern), min_len=1,
                           dense_above=above)  # fmt: skip

        def layer(rt: SparsePrefill = rt, above: float = above) -> torch.Tensor:
            return sparse_prefill_layer(q, k, v, lp, scale, dense_above=above, runtime=rt)

        ms = time_ms(layer)
        rt.dense_heads = 0
        out = layer()
        row = {"seq_len": n, "pattern": "vertical_slash 1000/6096", "indices": "estimated_random",
               "dense_above": None if math.isinf(above) else above, "layer_ms": ms,
               "cudnn_ms": cudnn, "speedup_vs_cudnn": cudnn / ms,
               "heads_run_dense": rt.dense_heads, "heads": H}  # fmt: skip
        if rt.dense_heads == H:
            kx, vx = (x.repeat_interleave(H // H_KV, 1) for x in (k, v))
            ref = torch.nn.functional.scaled_dot_product_attention(q, kx, vx, is_causal=True)
            row["max_abs_vs_sdpa"] = (out.float() - ref.float()).abs().max().item()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="32768,131072")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="h200")
    args = ap.parse_args()
    rows = []
    for n in [int(x) for x in args.lengths.split(",") if x]:
        rows += rows_at(n)
        torch.cuda.empty_cache()
    print("\nn        dense_above  layer_ms  cudnn_ms  x_cudnn  heads_dense")
    for r in rows:
        print(f"{r['seq_len']:<8d} {r['dense_above']!s:>11} {r['layer_ms']:9.2f} {r['cudnn_ms']:9.2f} "
              f"{r['speedup_vs_cudnn']:8.2f} {r['heads_run_dense']:>5d}/{r['heads']}")  # fmt: skip
    env = environment(packages=("ragline", "torch", "triton"))
    payload = {"benchmark": "sparse_guard", "device": torch.cuda.get_device_name(), **env,
               "results": rows}  # fmt: skip
    atomic_write_text(
        Path(args.out) / f"sparse_guard_{args.name}.json", json.dumps(payload, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
