"""Hopper launch of a banded `vertical_slash` plan (A-shape) through the Gluon kernel (`_gluon.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels._gluon import ws_flash_launch

if TYPE_CHECKING:
    import torch

    from ragline.kernels.vertical_slash.plan import BandedPlan

__all__ = ["_banded_gluon_launch"]


def _banded_gluon_launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: BandedPlan,
    out: torch.Tensor,
    lse: torch.Tensor,
    scale: float,
    *_triton_tuning: object,
) -> None:
    """Launch on inputs the refusal passed; the Triton tuning fields do not apply."""
    ws_flash_launch(
        q, k, v, out, lse, scale, plan.seq_lens, plan.heads, band=(plan.sinks, plan.e_max)
    )
