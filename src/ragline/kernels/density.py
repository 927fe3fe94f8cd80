"""How much of causal attention a plan computes, in the tile units MInference reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels.block_sparse.plan import BlockSparsePlan
from ragline.kernels.vertical_slash.plan import BandedPlan

if TYPE_CHECKING:
    from ragline.kernels.vertical_slash.plan import VerticalSlashPlan

__all__ = ["plan_density", "plan_density_per_slot"]


def plan_density(plan: VerticalSlashPlan | BandedPlan | BlockSparsePlan) -> float:
    """Tiles a plan computes (64 x 64 units, masked diagonal tiles counted whole) / dense causal tiles.

    Reads the plan back to the host: for reports, not for the run path.
    """
    per_slot = plan_density_per_slot(plan)
    return sum(per_slot) / len(per_slot)


def plan_density_per_slot(plan: VerticalSlashPlan | BandedPlan | BlockSparsePlan) -> list[float]:
    """`plan_density` of each head slot, averaged over the batch (for per-head cost budgets)."""
    import torch

    if isinstance(plan, BandedPlan):
        plan = plan.expand()
    t, bm, bn = plan.num_tokens, plan.block_m, plan.block_n
    kb = bm // bn
    n_m = -(-t // bm)
    m = torch.arange(n_m, device=plan.seq_lens.device)
    diag = int((((t - m * bm).clamp(max=bm) + bn - 1) // bn).sum())  # key tiles of diagonals
    units_per_tile = (bm // 64) * (bn // 64)
    n_b, n_s = plan.seq_lens.numel(), plan.heads.numel()
    tiles = torch.zeros(n_b, n_s, dtype=torch.long)
    if isinstance(plan, BlockSparsePlan):
        tiles += plan.block_count.long().sum(-1).cpu() + diag
    else:
        for b in range(n_b):
            for s in range(n_s):
                p = int(plan.prefix[b, s])
                count = (torch.minimum(m * bm, torch.tensor(p)) // bn).sum()
                r = int(plan.run_count[b, s])
                lo_e, hi_e = plan.run_lo[b, s, :r].long(), plan.run_hi[b, s, :r].long()
                for chunk in range(0, n_m, 1024):
                    mm = m[chunk : chunk + 1024, None] * kb
                    lo = torch.clamp((mm - hi_e) * bn, min=p)
                    hi = (mm - lo_e + 1) * bn
                    count += ((hi - lo).clamp(min=0) // bn).sum()
                count += ((plan.column_count[b, s].long() + bn - 1) // bn).sum()
                tiles[b, s] = int(count) + diag
    nb = -(-t // 64)
    dense = nb * (nb + 1) // 2
    return (tiles.double().mean(0) * units_per_tile / dense).tolist()
