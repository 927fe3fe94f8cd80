"""How far each query block's own causal block sits below its row's softmax mass, on real models.

`KernelTuning(pinned=True)` takes each query block's own causal block first and pins its row
maxima as the softmax reference for every other key; a block whose rows sum past 2^100 against
that reference is redone with the usual rescaling (twice the work for that block). This reads a
held-out NQ document at the model's longest context, captures the post-RoPE queries and keys of
its full-attention layers in a dense pass, and reports per 128-row query block and head the
headroom `h = log2(sum_j 2^(s_j - m_own))` over all causal keys (scores in log2 units, `m_own`
the row maximum over the block's own keys), the worst row of each block: the kernel redoes a
block when `h > 100` (block-sparse reads a subset of the keys, so this is an upper bound).

    PYTHONPATH=src python benchmarks/pinned_headroom.py --model smollm2-135m-instruct --seq-len 8192
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, write_results
from ragline.attention.hf import capture_queries_keys
from ragline.cli.calibrate import opening_tokens
from ragline.models.loader import load_causal_lm
from sparse_fidelity import long_documents

LOG2E = 1.0 / math.log(2.0)
LIMIT = 100.0  # the kernel's overflow bound: sums past 2^100 redo the block


def block_headroom(q: torch.Tensor, k: torch.Tensor, block: int, stride: int) -> torch.Tensor:
    """`[H, blocks]`: per head and sampled query block, its worst row's headroom in log2 units."""
    h, t, d = q.shape[1], q.shape[2], q.shape[3]
    group = h // k.shape[1]
    out = []
    for m in range(0, -(-t // block), stride):
        lo, hi = m * block, min(t, (m + 1) * block)
        rows = torch.arange(lo, hi)
        qs = q[0, :, lo:hi].float()  # [H, R, D]
        ks = k[0].float().repeat_interleave(group, 0)[:, :hi]  # [H, hi, D]
        s = (qs @ ks.transpose(1, 2)) / math.sqrt(d) * LOG2E  # [H, R, hi]
        s = s.masked_fill(torch.arange(hi)[None, None, :] > rows[None, :, None], float("-inf"))
        m_own = s[..., lo:].amax(-1)  # each row sees its own key, so finite
        lse2 = torch.logsumexp(s / LOG2E, -1) * LOG2E
        out.append((lse2 - m_own).amax(-1))
    return torch.stack(out, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--stride", type=int, default=4, help="measure every STRIDE-th query block")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    start = time.time()
    env = environment(packages=("ragline", "torch", "transformers"))
    lm = load_causal_lm(args.model, dtype=args.dtype, device="cpu")
    cfg = lm.model.config
    kinds = getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers
    full = [i for i, kind in enumerate(kinds) if kind == "full_attention"]
    opening = torch.tensor([opening_tokens(lm.tokenizer)], dtype=torch.long)
    (doc,) = long_documents(lm.tokenizer, 1, args.seq_len - opening.shape[1])
    qk = capture_queries_keys(lm.model, torch.cat([opening, doc], 1))
    per_layer = []
    for i in full:
        hr = block_headroom(qk[i][0], qk[i][1], 128, args.stride)
        per_layer.append({"layer": i, "max": hr.max().item(), "median": hr.median().item(),
                          "blocks_over_limit": int((hr > LIMIT).sum()), "blocks": hr.numel()})  # fmt: skip
        print(
            f"layer {i:2d}: headroom max {hr.max():6.1f} median {hr.median():5.1f} "
            f"blocks over {LIMIT:.0f}: {int((hr > LIMIT).sum())}/{hr.numel()}",
            flush=True,
        )
    every = torch.tensor([r["max"] for r in per_layer])
    body = {
        **env,
        "model": args.model, "seq_len": args.seq_len, "stride": args.stride, "limit_log2": LIMIT,
        "what": "per sampled 128-row query block and head: the worst row's log2(sum_j 2^(s_j - "
        "m_own)) over all causal keys, m_own the row max over the block's own keys; the pinned "
        "kernel redoes blocks above the limit",
        "max_headroom": every.max().item(),
        "blocks_over_limit": sum(r["blocks_over_limit"] for r in per_layer),
        "blocks": sum(r["blocks"] for r in per_layer),
        "layers": per_layer,
        "seconds": round(time.time() - start, 1),
    }  # fmt: skip
    print(write_results(f"pinned_headroom_{Path(args.model).stem}_{args.seq_len // 1024}k", body))


if __name__ == "__main__":
    main()
