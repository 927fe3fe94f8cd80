"""Masked attention in float32, the arithmetic every reference shares (plain PyTorch, any device)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["masked_attention_ref"]


def masked_attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: torch.Tensor,
    heads: torch.Tensor,
    mask_of: Callable[[int, int], torch.Tensor],
    scale: float | None,
    out: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of each (batch, slot) under `mask_of(b, s)` (`[T, T]` bool), as `(out, lse)`.

    Rows at or past `seq_lens[b]` are zero with lse -inf; heads no slot names are left as they are.
    """
    import torch

    b_sz, h, t, d = q.shape
    group = h // k.shape[1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = torch.zeros_like(q) if out is None else out
    lse = torch.full((b_sz, h, t), float("-inf"), dtype=torch.float32, device=q.device)
    for b in range(b_sz):
        n = int(seq_lens[b])
        for s, head in enumerate(heads.tolist()):
            mask = mask_of(b, s)[:n, :n]
            scores = (q[b, head, :n].float() @ k[b, head // group, :n].float().T) * scale
            scores = scores.masked_fill(~mask, float("-inf"))
            row_lse = torch.logsumexp(scores, -1)
            probs = torch.exp(scores - row_lse[:, None])
            out[b, head] = 0
            out[b, head, :n] = (probs @ v[b, head // group, :n].float()).to(out.dtype)
            lse[b, head, :n] = row_lse
    return out, lse
