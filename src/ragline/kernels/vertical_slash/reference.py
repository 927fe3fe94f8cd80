"""Plain-PyTorch specification of `vertical_slash`: the pattern spelled out as a dense mask."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels._attend_ref import masked_attention_ref

if TYPE_CHECKING:
    import torch

    from ragline.kernels.vertical_slash.plan import BandedPlan, VerticalSlashPlan

__all__ = ["vertical_slash_mask", "vertical_slash_ref"]


def vertical_slash_mask(
    plan: VerticalSlashPlan | BandedPlan, b: int, s: int, rows: slice | None = None
) -> torch.Tensor:
    """`[T, T]` bool (`[R, T]` for a slice of rows): which keys each query row of slot `s` reads.

    Row `i` in query block `m = i // block_m` reads key `j` when `j <= i` inside block `m`, or,
    left of block `m`, when `j` is a listed column or lies in a key block touched by the keys
    `m * block_m - d ... m * block_m + block_m - 1 - d` of a listed slash `d` (0 always listed).
    """
    import torch

    t, bm, bn = plan.num_tokens, plan.block_m, plan.block_n
    dev = plan.vertical.device
    keys = torch.arange(t, device=dev)
    rows_ = keys[rows] if rows is not None else keys
    blk_m = rows_ // bm
    m0 = int(blk_m[0]) if len(rows_) else 0
    n_m, n_k = (int(blk_m[-1]) + 1 - m0 if len(rows_) else 0), -(-t // bn)
    left = keys[None, :] < (blk_m * bm)[:, None]
    mask = (blk_m[:, None] == (keys // bm)[None, :]) & (keys[None, :] <= rows_[:, None])
    # key blocks [lo, hi] each slash touches in each query block, accumulated as +1/-1 edges
    d = torch.tensor([0, *plan.slash[b, s].tolist()], device=dev)
    d = d[(d >= 0) & (d < t)]
    starts = (m0 + torch.arange(n_m, device=dev))[:, None] * bm - d[None, :]  # [NM, NS]
    lo = starts.div(bn, rounding_mode="floor").clamp(0, n_k)
    hi = (starts + bm - 1).div(bn, rounding_mode="floor").clamp(-1, n_k - 1)
    ok = hi >= lo
    edges = torch.zeros(n_m, n_k + 1, dtype=torch.int64, device=dev)
    edges.scatter_add_(1, torch.where(ok, lo, n_k), ok.long())
    edges.scatter_add_(1, torch.where(ok, hi + 1, n_k), -ok.long())
    blocks = edges.cumsum(1)[:, :n_k] > 0
    allowed = blocks[blk_m - m0][:, keys // bn]
    cols = plan.vertical[b, s].long()
    cols = cols[(cols >= 0) & (cols < t)]
    allowed[:, cols] = True
    return mask | (allowed & left)


def vertical_slash_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: VerticalSlashPlan | BandedPlan,
    *,
    scale: float | None = None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of `vertical_slash` (same signature), float32 math, loops over batch and slots."""
    return masked_attention_ref(
        q, k, v, plan.seq_lens, plan.heads, lambda b, s: vertical_slash_mask(plan, b, s), scale, out
    )
