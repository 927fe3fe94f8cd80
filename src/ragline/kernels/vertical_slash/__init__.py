"""Vertical-slash sparse attention: key columns plus merged diagonal runs; A-shape as a special case."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ragline.kernels._common import check_qkv, import_triton, use_triton
from ragline.kernels.vertical_slash.plan import (
    VerticalSlashPlan,
    plan_banded,
    plan_vertical_slash,
)
from ragline.kernels.vertical_slash.reference import vertical_slash_mask, vertical_slash_ref

if TYPE_CHECKING:
    import torch

__all__ = [
    "VerticalSlashPlan",
    "plan_banded",
    "plan_vertical_slash",
    "vertical_slash",
    "vertical_slash_mask",
    "vertical_slash_ref",
]


def _planned(plan: VerticalSlashPlan, h: int) -> torch.Tensor:
    import torch

    hit = torch.zeros(h, dtype=torch.bool, device=plan.heads.device)
    return hit.index_fill_(0, plan.heads.long(), True)[None, :, None]


def vertical_slash(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: VerticalSlashPlan,
    *,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention of each planned head over its columns, diagonal runs and own block.

    Args:
        q: `[B, H, T, D]` bf16/fp16 (fp32 allowed, slower), D in {64, 128}.
        k, v: `[B, H_kv, T, D]`, same dtype; `H % H_kv == 0`, read in place (no repeat).
        plan: from `plan_vertical_slash` (or `ragline.attention.patterns`), built for this T.
        scale: softmax scale, default `1 / sqrt(D)`.
        out, lse: optional `[B, H, T, D]` and `[B, H, T]` float32 to write into; heads outside
            `plan.heads` are left untouched.

    Returns:
        `(out [B, H, T, D], lse [B, H, T] float32)`; rows at or past `seq_lens[b]` are 0 / -inf.

    Example:
        >>> import torch
        >>> from ragline.kernels import plan_vertical_slash, vertical_slash
        >>> q = k = v = torch.randn(1, 2, 256, 64)
        >>> plan = plan_vertical_slash(torch.tensor([[[0, 5]] * 2]), torch.tensor([[[1]] * 2]),
        ...                            torch.tensor([256]), 256)
        >>> out, lse = vertical_slash(q, k, v, plan)  # doctest: +SKIP
    """
    import torch

    check_qkv(q, k, v, plan.seq_lens)
    b, h, t, d = q.shape
    if not use_triton(q):
        o, l_ = vertical_slash_ref(q, k, v, plan, scale=scale, out=out)
        return o, l_ if lse is None else lse.copy_(torch.where(_planned(plan, h), l_, lse))
    import_triton()
    from ragline.kernels.vertical_slash.triton import _vertical_slash_launch

    out = torch.empty_like(q) if out is None else out
    lse = torch.empty((b, h, t), dtype=torch.float32, device=q.device) if lse is None else lse
    _vertical_slash_launch(
        q, k, v, plan, out, lse,
        1.0 / math.sqrt(d) if scale is None else scale,
        num_warps or (8 if d == 128 else 4), num_stages or 3,
    )  # fmt: skip
    return out, lse
