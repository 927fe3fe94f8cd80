"""Plain-PyTorch specification of `row_topk`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["row_topk_ref"]


def row_topk_ref(
    scores: torch.Tensor,
    k: int,
    *,
    valid: torch.Tensor | None = None,
    keep_first: bool = False,
) -> torch.Tensor:
    """Positions of each row's `k` largest candidate scores, ties to the lower position, in
    position order, -1 after the last when a row has fewer than `k` candidates.

    `scores` `[R, W]` float (no NaN), `1 <= k <= W`. Row `r`'s candidates are its first
    `valid[r % len(valid)]` positions (all without `valid`); with `keep_first`, position 0 is
    taken before any other whenever it is a candidate. Returns `[R, k]` int32.
    """
    import torch

    r, w = scores.shape
    pos = torch.arange(w, device=scores.device)
    if valid is None:
        n = torch.full((r,), w, device=scores.device)
    else:
        n = valid.to(scores.device, torch.long).repeat(r // valid.shape[0]).clamp(0, w)
    candidate = pos[None, :] < n[:, None]
    key = scores.masked_fill(~candidate, float("-inf"))
    if keep_first:
        key[:, 0] = torch.where(candidate[:, 0], float("inf"), key[:, 0])
    # A stable sort puts a candidate scoring -inf before every non-candidate: those come later
    # in the row. So the first min(k, n) of the order are exactly the positions taken.
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices[:, :k]
    taken = torch.arange(k, device=scores.device)[None, :] < n[:, None]
    picked = torch.where(taken, order, w).sort(dim=-1).values
    return torch.where(picked < w, picked, -1).to(torch.int32)
