"""Plain-PyTorch specification of `block_sparse`: the listed blocks spelled out as a dense mask."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels._attend_ref import masked_attention_ref

if TYPE_CHECKING:
    import torch

    from ragline.kernels.block_sparse.plan import BlockSparsePlan

__all__ = ["block_sparse_mask", "block_sparse_ref"]


def block_sparse_mask(
    plan: BlockSparsePlan, b: int, s: int, rows: slice | None = None
) -> torch.Tensor:
    """`[T, T]` bool (`[R, T]` for a slice of rows): row `i` reads key `j <= i` of its own query
    block and every key of a block listed for its query block."""
    import torch

    t, bm, bn = plan.num_tokens, plan.block_m, plan.block_n
    dev = plan.block_idx.device
    pos = torch.arange(t, device=dev)
    rows_ = pos[rows] if rows is not None else pos
    mask = (rows_[:, None] // bm == pos[None, :] // bm) & (pos[None, :] <= rows_[:, None])
    blocks = torch.zeros(-(-t // bm), -(-t // bn), dtype=torch.bool, device=dev)
    for m in sorted(set((rows_ // bm).tolist())):
        n = int(plan.block_count[b, s, m])
        blocks[m, plan.block_idx[b, s, m, :n].long()] = True
    return mask | blocks[rows_ // bm][:, pos // bn]


def block_sparse_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: BlockSparsePlan,
    *,
    scale: float | None = None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of `block_sparse` (same signature), float32 math, loops over batch and slots."""
    return masked_attention_ref(
        q, k, v, plan.seq_lens, plan.heads, lambda b, s: block_sparse_mask(plan, b, s), scale, out
    )
