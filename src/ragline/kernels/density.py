"""How much of causal attention a plan computes, in the tile units MInference reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels.block_sparse.plan import BlockSparsePlan
from ragline.kernels.vertical_slash.plan import BandedPlan

if TYPE_CHECKING:
    import torch

    from ragline.kernels.vertical_slash.plan import VerticalSlashPlan

__all__ = ["plan_density", "plan_density_per_slot", "vertical_slash_tile_density"]


def plan_density(plan: VerticalSlashPlan | BandedPlan | BlockSparsePlan) -> float:
    """Tiles a plan computes (64 x 64 units, masked diagonal tiles counted whole) / dense causal tiles.

    Reads the plan back to the host: for reports, not for the run path.
    """
    per_slot = plan_density_per_slot(plan)
    return sum(per_slot) / len(per_slot)


def plan_density_per_slot(plan: VerticalSlashPlan | BandedPlan | BlockSparsePlan) -> list[float]:
    """`plan_density` of each head slot, averaged over the batch (for per-head cost budgets)."""

    if isinstance(plan, BandedPlan):
        plan = plan.expand()
    if not isinstance(plan, BlockSparsePlan):
        return vertical_slash_tile_density(plan).mean(0).tolist()
    t, bm, bn = plan.num_tokens, plan.block_m, plan.block_n
    tiles = plan.block_count.long().sum(-1).cpu() + _diagonal_tiles(t, bm, bn)
    return _as_density(tiles, t, bm, bn).mean(0).tolist()


def _diagonal_tiles(t: int, bm: int, bn: int) -> int:
    """Key tiles of `bn` the diagonal blocks of `bm` query rows read: all full but the last."""
    n_m = -(-t // bm)
    return 0 if n_m == 0 else (n_m - 1) * (bm // bn) + -(-(t - (n_m - 1) * bm) // bn)


def _as_density(tiles: torch.Tensor, t: int, bm: int, bn: int) -> torch.Tensor:
    """Tiles of `bm x bn` as a share of the dense causal 64 x 64 tiles of `t` tokens."""
    nb = -(-t // 64)
    return tiles.double() * ((bm // 64) * (bn // 64)) / (nb * (nb + 1) // 2)


def vertical_slash_tile_density(plan: VerticalSlashPlan) -> torch.Tensor:
    """`[B, S]` `plan_density` per sequence and slot, computed on the plan's device, no host sync.

    Query block `m` reads key block `m * block_m / block_n - e` for each covered offset `e`
    when it lies at or past the prefix, every prefix block left of its diagonal, its gathered
    columns in tiles of `block_n`, and its diagonal: the tiles the kernel computes.
    """
    import torch

    t, bm, bn = plan.num_tokens, plan.block_m, plan.block_n
    kb = bm // bn
    dev = plan.cover.device
    n_m = -(-t // bm)
    m = torch.arange(n_m, device=dev)
    e = torch.arange(plan.cover.shape[-1], device=dev)
    pb = (plan.prefix.long() // bn)[..., None]  # prefix in key blocks, [B, S, 1]
    # query blocks with key block m*kb - e >= pb: m >= ceil((e + pb) / kb)
    rows = (n_m - (e + pb + kb - 1).div(kb, rounding_mode="floor")).clamp(min=0)
    runs = (plan.cover.long() * rows).sum(-1)
    prefix = torch.minimum(m * bm, plan.prefix.long()[..., None]).div(bn, rounding_mode="floor")
    columns = (plan.column_count.long() + bn - 1).div(bn, rounding_mode="floor").sum(-1)
    tiles = runs + prefix.sum(-1) + columns + _diagonal_tiles(t, bm, bn)
    return _as_density(tiles, t, bm, bn)
