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


def row_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of each row's `k` largest scores, ties to the lower position, in position order.

    Args:
        scores: `[R, W]` float32 with unit stride along W, no NaN (±inf is fine; -0.0 ties
            +0.0). NaN is unchecked: the kernel ranks +NaN above +inf and -NaN below -inf.
        k: how many per row, `1 <= k <= W`.

    Returns:
        `[R, k]` int32.

    Example:
        >>> import torch
        >>> row_topk(torch.tensor([[0.5, 2.0, -1.0, 2.0]]), 2).tolist()
        [[1, 3]]
    """
    import torch

    if scores.dim() != 2 or scores.dtype != torch.float32 or scores.stride(-1) != 1:
        raise ValueError(
            f"row_topk: expected [R, W] float32 scores with unit stride along W; got "
            f"{tuple(scores.shape)} {scores.dtype} strides {scores.stride()}"
        )
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"row_topk: k must be in [1, {scores.shape[1]}]; got {k}")
    if not use_triton(scores) or scores.shape[1] > ROW_TOPK_MAX_WIDTH or not scores.shape[0]:
        return row_topk_ref(scores, k)
    import_triton()
    from ragline.kernels.row_topk.triton import _row_topk_launch

    out = torch.empty(scores.shape[0], k, dtype=torch.int32, device=scores.device)
    _row_topk_launch(scores, k, out)
    return out
