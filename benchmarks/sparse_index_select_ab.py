"""Block-sparse index build and layer of an older ragline tree against this one, alternated.

Written for the eleventh session's index change (row_topk with candidates and counts); the old
tree is 00d5c85. Put its two modules in a folder, the old layer reading the old builder:

    mkdir -p /tmp/oldbs
    git show 00d5c85:src/ragline/attention/patterns.py > /tmp/oldbs/old_bs_patterns.py
    git show 00d5c85:src/ragline/attention/sparse.py | \
        sed 's/from ragline.attention.patterns import/from old_bs_patterns import/' \
        > /tmp/oldbs/old_bs_sparse.py
    OLD_TREE=/tmp/oldbs PYTHONPATH=src python benchmarks/sparse_index_select_ab.py OUTDIR \
        16384,32768,65536,131072,262144,1048576

Llama-3-8B attention shape, top-100 blocks of 64. Checks that both give the same blocks and
counts and the same layer output, then times the build (index + plan) and the whole layer,
old and new alternated in three rounds. Writes OUTDIR/bsab.json.
"""

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

sys.path.insert(0, os.environ["OLD_TREE"])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import old_bs_patterns as oldp
import old_bs_sparse as olds

import sparse_prefill
from ragline.attention import sparse as news
from ragline.attention.config import BlockSparse
from ragline.attention.patterns import block_sparse_plan
from ragline.kernels import block_sparse, plan_block_sparse
from ragline.kernels.row_topk import row_topk, row_topk_ref


def time_ms(fn: Callable[[], Any]) -> float:
    """Median of 15 CUDA-event timings after one untimed call."""
    return sparse_prefill.time_ms(fn, budget_ms=float("inf"), max_reps=15)


def host_ms(fn: Callable[[], Any], reps: int = 20) -> float:
    """Host time to enqueue one call of `fn`."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    host = (time.perf_counter() - t0) / reps * 1e3
    torch.cuda.synchronize()
    return host


def canon(plan: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts and each row's listed blocks, sorted (entries past the count ignored)."""
    n = plan.block_count.long()
    idx = plan.block_idx.long()
    pos = torch.arange(idx.shape[-1], device=idx.device)
    return n, torch.where(pos < n[..., None], idx, 1 << 40).sort(-1).values


def topk_parity() -> list[dict]:
    """row_topk with candidates, a forced first position and counts, against its reference."""
    out = []
    g = torch.Generator(device="cuda").manual_seed(0)
    for rows, period, width, k in ((1001, 7, 37, 5), (4096, 128, 301, 98), (333, 37, 2047, 98),
                                   (77, 77, 4096, 1000)):  # fmt: skip
        s = torch.randn(rows, width, device="cuda", generator=g)
        s[::5, :7] = float("-inf")
        s[::7, 3] = s[::7, 9] = 0.5
        s[::11, 2] = float("inf")
        valid = torch.randint(-3, width + 5, (period,), device="cuda", generator=g)
        for first in (False, True):
            c = torch.empty(rows, dtype=torch.int32, device="cuda")
            got = row_topk(s, k, valid=valid, keep_first=first, counts=c)
            want = row_topk_ref(s.cpu(), k, valid=valid.cpu(), keep_first=first)
            ok = torch.equal(got.cpu(), want) and torch.equal(
                c.cpu(), (want >= 0).sum(-1, dtype=torch.int32)
            )
            out.append({"rows": rows, "period": period, "width": width, "k": k,
                        "keep_first": first, "equal": ok})  # fmt: skip
            print("row_topk parity", rows, width, k, first, ok, flush=True)
    return out


def at_length(t: int, lp_old: Any, lp_new: Any) -> dict:
    """Same blocks, same layer output, then old/new build and layer times in three rounds."""
    torch.manual_seed(t)
    q = torch.randn(1, 32, t, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 8, t, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    lens = torch.full((1,), t, dtype=torch.int32, device="cuda")
    scale = 128**-0.5

    def old_build() -> Any:
        return plan_block_sparse(oldp.block_sparse_indices(q, k, 100), lens, t, compact=True)

    def new_build() -> Any:
        return block_sparse_plan(q, k, 100, lens)

    (no, io), (nn, in_) = canon(old_build()), canon(new_build())
    row: dict = {"seq_len": t, "same_counts": bool(torch.equal(no, nn)),
                 "same_blocks": bool(torch.equal(io, in_))}  # fmt: skip
    oo = olds.sparse_prefill_layer(q, k, v, lp_old, scale)
    on = news.sparse_prefill_layer(q, k, v, lp_new, scale)
    row["layer_max_abs_diff"] = (oo.float() - on.float()).abs().max().item()
    plan = new_build()
    row["kernel_ms"] = time_ms(lambda: block_sparse(q, k, v, plan, scale=scale))
    fns = {
        "old_build": (time_ms, old_build),
        "new_build": (time_ms, new_build),
        "old_host": (host_ms, old_build),
        "new_host": (host_ms, new_build),
        "old_layer": (time_ms, lambda: olds.sparse_prefill_layer(q, k, v, lp_old, scale)),
        "new_layer": (time_ms, lambda: news.sparse_prefill_layer(q, k, v, lp_new, scale)),
    }
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(3):
        for key, (timer, fn) in fns.items():
            times[key].append(timer(fn))
    for key, val in times.items():
        row[key + "_ms"] = statistics.median(val)
        row[key + "_all"] = val
    row["build_ratio"] = row["new_build_ms"] / row["old_build_ms"]
    row["layer_ratio"] = row["new_layer_ms"] / row["old_layer_ms"]
    return row


def main() -> None:
    out = sys.argv[1]
    res: dict = {"parity": topk_parity(), "rows": []}
    lp_old = olds._layer([BlockSparse(top_k=100)] * 32, torch.device("cuda"))
    lp_new = news._layer([BlockSparse(top_k=100)] * 32, torch.device("cuda"))
    for t in [int(x) for x in sys.argv[2].split(",")]:
        row = at_length(t, lp_old, lp_new)
        res["rows"].append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_all")}), flush=True)
        torch.cuda.empty_cache()
    res["device"] = torch.cuda.get_device_name()
    res["versions"] = {"torch": torch.__version__, "triton": __import__("triton").__version__}
    with open(os.path.join(out, "bsab.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
