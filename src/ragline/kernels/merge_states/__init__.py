"""Merge `(out, lse)` pairs of attention computed over disjoint key sets into one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels._common import import_triton, use_triton
from ragline.kernels.merge_states.reference import merge_states_ref

if TYPE_CHECKING:
    import torch

__all__ = ["merge_states", "merge_states_ref"]


def merge_states(
    out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over the keys of A and B together from attention over A and over B (A, B disjoint).

    Args:
        out_a, out_b: `[B, H, T, D]` bf16/fp16/fp32 partial outputs, same shape and dtype.
        lse_a, lse_b: `[B, H, T]` float32 natural-log sums of exp of the scores; -inf = no keys.

    Returns:
        `(out [B, H, T, D] in out_a's dtype, lse [B, H, T] float32)`.

    Example:
        >>> import torch
        >>> o, l = torch.randn(1, 1, 4, 8), torch.zeros(1, 1, 4)
        >>> out, lse = merge_states(o, l, o, l)  # doctest: +SKIP
    """
    import torch

    if out_a.shape != out_b.shape or lse_a.shape != out_a.shape[:-1] or lse_b.shape != lse_a.shape:
        raise ValueError(
            f"merge_states: expected out [B,H,T,D] twice and lse [B,H,T] twice; got "
            f"{tuple(out_a.shape)}, {tuple(lse_a.shape)}, {tuple(out_b.shape)}, {tuple(lse_b.shape)}"
        )
    if not use_triton(out_a):
        return merge_states_ref(out_a, lse_a, out_b, lse_b)
    import_triton()
    from ragline.kernels.merge_states.triton import _merge_states_launch

    out = torch.empty_like(out_a)
    lse = torch.empty(lse_a.shape, dtype=torch.float32, device=out_a.device)
    _merge_states_launch(
        out_a.contiguous(), lse_a.contiguous(), out_b.contiguous(), lse_b.contiguous(), out, lse
    )
    return out, lse
