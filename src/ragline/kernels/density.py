"""How much of causal attention a plan computes, in the tile units MInference reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline.kernels.block_sparse.plan import BlockSparsePlan

if TYPE_CHECKING:
    from ragline.kernels.vertical_slash.plan import VerticalSlashPlan

__all__ = ["plan_density"]


def plan_density(plan: VerticalSlashPlan | BlockSparsePlan) -> float:
    """Tiles a plan computes (64 x 64 units, masked diagonal tiles counted whole) / dense causal tiles.

    Reads the plan back to the host: for reports, not for the run path.
    """
    import torch

    t, bm, bn = plan.num_tokens, plan.block_m, plan.block_n
    kb = bm // bn
    n_m = -(-t // bm)
    m = torch.arange(n_m, device=plan.seq_lens.device)
    diag = ((t - m * bm).clamp(max=bm) + bn - 1) // bn  # key tiles of the diagonal block
    units_per_tile = (bm // 64) * (bn // 64)
    total = 0
    if isinstance(plan, BlockSparsePlan):
        total = (
            int(plan.block_count.sum())
            + int(diag.sum()) * plan.heads.numel() * plan.seq_lens.numel()
        )
    else:
        for b in range(plan.prefix.shape[0]):
            for s in range(plan.prefix.shape[1]):
                p = int(plan.prefix[b, s])
                tiles = (torch.minimum(m * bm, torch.tensor(p)) // bn).sum()
                r = int(plan.run_count[b, s])
                lo_e, hi_e = plan.run_lo[b, s, :r].long(), plan.run_hi[b, s, :r].long()
                for chunk in range(0, n_m, 1024):
                    mm = m[chunk : chunk + 1024, None] * kb
                    lo = torch.clamp((mm - hi_e) * bn, min=p)
                    hi = (mm - lo_e + 1) * bn
                    tiles += ((hi - lo).clamp(min=0) // bn).sum()
                tiles += ((plan.column_count[b, s].long() + bn - 1) // bn).sum()
                total += int(tiles) + int(diag.sum())
    nb = -(-t // 64)
    dense = nb * (nb + 1) // 2 * plan.heads.numel() * plan.seq_lens.numel()
    return total * units_per_tile / dense
