"""Vertical-slash sparse attention: key columns plus merged diagonal runs; A-shape as a special case."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragline.kernels._common import KernelTuning, run_sparse
from ragline.kernels.vertical_slash.plan import (
    BandedPlan,
    VerticalSlashPlan,
    plan_banded,
    plan_vertical_slash,
)
from ragline.kernels.vertical_slash.reference import vertical_slash_mask, vertical_slash_ref

if TYPE_CHECKING:
    import torch

__all__ = [
    "BandedPlan",
    "VerticalSlashPlan",
    "plan_banded",
    "plan_vertical_slash",
    "vertical_slash",
    "vertical_slash_mask",
    "vertical_slash_ref",
]


def vertical_slash(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: VerticalSlashPlan | BandedPlan,
    *,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
    tuning: KernelTuning | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention of each planned head over its columns, diagonal runs and own block.

    Args:
        q: `[B, H, T, D]` bf16/fp16 (fp32 allowed, slower), D in {64, 128, 256} (256: not in fp32 on a GPU).
        k, v: `[B, H_kv, T, D]`, same dtype; `H % H_kv == 0`, read in place (no repeat).
        plan: from `plan_vertical_slash` or `plan_banded`, built for this T.
        scale: softmax scale, default `1 / sqrt(D)`.
        out, lse: optional `[B, H, T, D]` and `[B, H, T]` float32 to write into; heads outside
            `plan.heads` are left untouched.
        tuning: launch choices (warps, stages, tile width); results do not depend on them.

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

    def launcher() -> Any:
        from ragline.kernels.vertical_slash.triton import _vertical_slash_launch

        return _vertical_slash_launch

    return run_sparse(
        q, k, v, plan, reference=vertical_slash_ref, launcher=launcher, scale=scale, out=out, lse=lse,
        tuning=tuning,
    )  # fmt: skip
