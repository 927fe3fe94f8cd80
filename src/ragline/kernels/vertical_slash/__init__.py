"""Vertical-slash sparse attention: key columns plus merged diagonal runs; A-shape as a special case."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragline.kernels._common import (
    VERTICAL_SLASH_TUNING,
    KernelTuning,
    run_sparse,
    warp_specialized_refusal,
)
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
    "vertical_slash_warp_specialized_refusal",
]


def vertical_slash_warp_specialized_refusal(
    q: torch.Tensor, k: torch.Tensor, plan: VerticalSlashPlan | BandedPlan
) -> str | None:
    """Why the warp-specialised Hopper kernel cannot take this plan and inputs, or None."""
    if not isinstance(plan, BandedPlan):
        # its loader moves whole 64-key blocks by TMA, which on Hopper cannot gather rows
        return "it takes banded plans (A-shape) only; general plans gather single columns"
    return warp_specialized_refusal(q, k, plan.block_m, plan.block_n)


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
        tuning: launch choices (kernel, warps, stages, tile width); results do not depend on
            them beyond rounding. Default: `VERTICAL_SLASH_TUNING` at head dim 128 in
            bf16/fp16 (on Hopper the warp-specialised Gluon kernel for banded plans), else
            `KernelTuning()`.

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

    if tuning is None and q.shape[-1] == 128 and q.element_size() == 2:
        tuning = VERTICAL_SLASH_TUNING

    def launcher() -> Any:
        if tuning is not None and tuning.warp_specialize:
            if vertical_slash_warp_specialized_refusal(q, k, plan) is None:
                from ragline.kernels.vertical_slash.gluon import _banded_gluon_launch

                return _banded_gluon_launch
        from ragline.kernels.vertical_slash.triton import _vertical_slash_launch

        return _vertical_slash_launch

    return run_sparse(
        q, k, v, plan, reference=vertical_slash_ref, launcher=launcher, scale=scale, out=out, lse=lse,
        tuning=tuning,
    )  # fmt: skip
