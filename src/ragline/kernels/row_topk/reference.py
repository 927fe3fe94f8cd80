"""Plain-PyTorch specification of `row_topk`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["row_topk_ref"]


def row_topk_ref(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of each row's `k` largest scores, ties to the lower position, in position order.

    `scores` `[R, W]` float (no NaN), `1 <= k <= W`; returns `[R, k]` int32.
    """
    import torch

    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :k]
    return order.sort(dim=-1).values.to(torch.int32)
