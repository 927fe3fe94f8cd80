"""Plain-PyTorch specification of `vertical_slash`: the pattern spelled out as a dense mask."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels._attend_ref import masked_attention_ref

if TYPE_CHECKING:
    import torch

    from ragline.kernels.vertical_slash.plan import VerticalSlashPlan

__all__ = ["vertical_slash_mask", "vertical_slash_ref"]


def vertical_slash_mask(plan: VerticalSlashPlan, b: int, s: int) -> torch.Tensor:
    """`[T, T]` bool: which keys (columns) each query row (rows) of slot `s` of sequence `b` reads.

    Row `i` in query block `m = i // block_m` reads key `j` when `j <= i` inside block `m`, or,
    left of block `m`, when `j` is a listed column or lies in a key block touched by the keys
    `m * block_m - d ... m * block_m + block_m - 1 - d` of a listed slash `d` (0 always listed).
    """
    import torch

    t, bm, bn = plan.num_tokens, plan.block_m, plan.block_n
    dev = plan.vertical.device
    rows = torch.arange(t, device=dev)
    blk_m = rows // bm
    key_blk = rows // bn
    left = rows[None, :] < (blk_m * bm)[:, None]
    mask = (blk_m[:, None] == blk_m[None, :]) & (rows[None, :] <= rows[:, None])
    allowed = torch.zeros(t, t, dtype=torch.bool, device=dev)
    for d in [0, *plan.slash[b, s].tolist()]:
        if d < 0 or d >= t:
            continue
        lo = (blk_m * bm - d).div(bn, rounding_mode="floor")
        hi = (blk_m * bm + bm - 1 - d).div(bn, rounding_mode="floor")
        allowed |= (key_blk[None, :] >= lo[:, None]) & (key_blk[None, :] <= hi[:, None])
    cols = [c for c in plan.vertical[b, s].tolist() if 0 <= c < t]
    allowed[:, cols] = True
    return mask | (allowed & left)


def vertical_slash_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: VerticalSlashPlan,
    *,
    scale: float | None = None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of `vertical_slash` (same signature), float32 math, loops over batch and slots."""
    return masked_attention_ref(
        q, k, v, plan.seq_lens, plan.heads, lambda b, s: vertical_slash_mask(plan, b, s), scale, out
    )
