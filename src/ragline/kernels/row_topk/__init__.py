"""Positions of the k largest scores of each row (the block-sparse index's top-k)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels._common import import_triton, use_triton
from ragline.kernels.row_topk.reference import row_topk_ref

if TYPE_CHECKING:
    import torch

__all__ = ["ROW_TOPK_MAX_WIDTH", "row_topk", "row_topk_ref"]

ROW_TOPK_MAX_WIDTH = 4096
"""Widest row the kernel holds in registers; wider rows take the reference."""


def row_topk(
    scores: torch.Tensor,
    k: int,
    *,
    valid: torch.Tensor | None = None,
    keep_first: bool = False,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Positions of each row's `k` largest candidate scores, ties to the lower position, in
    position order; -1 after the last when a row has fewer than `k` candidates.

    Args:
        scores: `[R, W]` float32 with unit stride along W, no NaN (±inf is fine; -0.0 ties
            +0.0). NaN is unchecked: the kernel ranks +NaN above +inf and -NaN below -inf.
        k: how many per row, `1 <= k <= W`.
        valid: `[P]` contiguous integers with `R % P == 0`: row `r`'s candidates are its first
            `valid[r % P]` positions (clamped to `[0, W]`); the rest are not read. Default: all.
            (The block-sparse index passes each query block's count of key blocks left of its
            diagonal, repeating for every head.)
        keep_first: position 0 is taken before any other whenever it is a candidate.
        counts: `[R]` contiguous int32 to fill with each row's number of positions,
            `min(k, candidates)`.

    Returns:
        `[R, k]` int32.

    Example:
        >>> import torch
        >>> row_topk(torch.tensor([[0.5, 2.0, -1.0, 2.0]]), 2).tolist()
        [[1, 3]]
        >>> row_topk(torch.tensor([[0.5, 2.0, -1.0, 2.0]]), 2, valid=torch.tensor([1])).tolist()
        [[0, -1]]
    """
    import torch

    if scores.dim() != 2 or scores.dtype != torch.float32 or scores.stride(-1) != 1:
        raise ValueError(
            f"row_topk: expected [R, W] float32 scores with unit stride along W; got "
            f"{tuple(scores.shape)} {scores.dtype} strides {scores.stride()}"
        )
    rows, width = scores.shape
    if not 1 <= k <= width:
        raise ValueError(f"row_topk: k must be in [1, {width}]; got {k}")
    if valid is not None and (
        valid.dim() != 1
        or not valid.shape[0]
        or rows % valid.shape[0]
        or valid.dtype not in (torch.int32, torch.int64)
        or valid.device != scores.device
        or valid.stride(0) != 1
    ):
        raise ValueError(
            f"row_topk: valid must be contiguous [P] int32/int64 on {scores.device} with {rows} "
            f"rows a multiple of P; got {tuple(valid.shape)} {valid.dtype} on {valid.device}, "
            f"strides {valid.stride()}"
        )
    if counts is not None and (
        counts.shape != (rows,)
        or counts.dtype != torch.int32
        or counts.device != scores.device
        or counts.stride(0) != 1
    ):
        raise ValueError(
            f"row_topk: counts must be contiguous [{rows}] int32 on {scores.device}; got "
            f"{tuple(counts.shape)} {counts.dtype} on {counts.device}, strides {counts.stride()}"
        )
    if not use_triton(scores) or width > ROW_TOPK_MAX_WIDTH or not rows:
        out = row_topk_ref(scores, k, valid=valid, keep_first=keep_first)
        if counts is not None:
            counts.copy_((out >= 0).sum(-1))
        return out
    import_triton()
    from ragline.kernels.row_topk.triton import _row_topk_launch

    out = torch.empty(rows, k, dtype=torch.int32, device=scores.device)
    _row_topk_launch(scores, k, out, valid, keep_first, counts)
    return out
