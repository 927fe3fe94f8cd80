"""Hopper launch of `block_sparse` through the warp-specialised Gluon kernel (`kernels/_gluon.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels._gluon import ws_flash_launch

if TYPE_CHECKING:
    import torch

    from ragline.kernels.block_sparse.plan import BlockSparsePlan

__all__ = ["_block_sparse_gluon_launch"]


def _block_sparse_gluon_launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: BlockSparsePlan,
    out: torch.Tensor,
    lse: torch.Tensor,
    scale: float,
    *_triton_tuning: object,
) -> None:
    """Launch on inputs the refusal passed; the Triton tuning fields do not apply."""
    ws_flash_launch(
        q, k, v, out, lse, scale, plan.seq_lens, plan.heads,
        block_idx=plan.block_idx, block_count=plan.block_count,
    )  # fmt: skip
