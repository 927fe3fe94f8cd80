"""Block-sparse attention: per query block, a list of key blocks plus its own block, causal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragline.kernels._common import (
    BLOCK_SPARSE_TUNING,
    KernelTuning,
    run_sparse,
    warp_specialized_refusal,
)
from ragline.kernels.block_sparse.plan import BlockSparsePlan, plan_block_sparse
from ragline.kernels.block_sparse.reference import block_sparse_mask, block_sparse_ref

if TYPE_CHECKING:
    import torch

__all__ = [
    "BlockSparsePlan",
    "block_sparse",
    "block_sparse_mask",
    "block_sparse_ref",
    "block_sparse_warp_specialized_refusal",
    "plan_block_sparse",
]


def block_sparse_warp_specialized_refusal(
    q: torch.Tensor, k: torch.Tensor, plan: BlockSparsePlan
) -> str | None:
    """Why the warp-specialised Hopper kernel cannot take these inputs, or None if it can."""
    return warp_specialized_refusal(q, k, plan.block_m, plan.block_n)


def block_sparse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: BlockSparsePlan,
    *,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
    tuning: KernelTuning | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention of each planned head over its listed key blocks and its own block.

    Args:
        q: `[B, H, T, D]` bf16/fp16 (fp32 allowed, slower), D in {64, 128, 256} (256: not in fp32 on a GPU).
        k, v: `[B, H_kv, T, D]`, same dtype; `H % H_kv == 0`, read in place (no repeat).
        plan: from `plan_block_sparse` (or `ragline.attention.patterns`), built for this T.
        scale: softmax scale, default `1 / sqrt(D)`.
        out, lse: optional `[B, H, T, D]` and `[B, H, T]` float32 to write into; heads outside
            `plan.heads` are left untouched.
        tuning: launch choices (kernel, warps, stages, tile width); results do not depend on
            them beyond rounding. Default: `BLOCK_SPARSE_TUNING` at head dim 128 in bf16/fp16
            (on Hopper the warp-specialised Gluon kernel), where it was measured, else
            `KernelTuning()`.

    Returns:
        `(out [B, H, T, D], lse [B, H, T] float32)`; rows at or past `seq_lens[b]` are 0 / -inf.

    Example:
        >>> import torch
        >>> from ragline.kernels import plan_block_sparse, block_sparse
        >>> q = k = v = torch.randn(1, 2, 256, 64)
        >>> idx = torch.tensor([0, 1]).expand(1, 2, 2, 2)  # two query blocks of 128
        >>> plan = plan_block_sparse(idx, torch.tensor([256]), 256)
        >>> out, lse = block_sparse(q, k, v, plan)  # doctest: +SKIP
    """

    if tuning is None and q.shape[-1] == 128 and q.element_size() == 2:
        tuning = BLOCK_SPARSE_TUNING

    def launcher() -> Any:
        if tuning is not None and tuning.warp_specialize:
            if block_sparse_warp_specialized_refusal(q, k, plan) is None:
                from ragline.kernels.block_sparse.gluon import _block_sparse_gluon_launch

                return _block_sparse_gluon_launch
        from ragline.kernels.block_sparse.triton import _block_sparse_launch

        return _block_sparse_launch

    return run_sparse(
        q, k, v, plan, reference=block_sparse_ref, launcher=launcher, scale=scale, out=out, lse=lse,
        tuning=tuning,
    )  # fmt: skip
