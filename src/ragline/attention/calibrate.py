"""Offline per-head pattern search: attention-mass recall of equal-cost candidates, best per head.

For each sample, each layer's queries and keys are captured from a dense pass; per head, the
recall of a candidate is the softmax mass its pattern keeps, averaged over query rows, read
from the sparse ops' log-sum-exps (no `T x T` matrix is ever held), so a recall describes
exactly what the kernels will compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ragline.attention.config import (
    AShape,
    BlockSparse,
    HeadPattern,
    SparsePrefillConfig,
    VerticalSlash,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "VS_SCALES",
    "Candidate",
    "attention_recall",
    "calibrate_model",
    "candidates_for_budget",
]


@dataclass(frozen=True)
class Candidate:
    """One pattern at sizes chosen so its density is about the budget at the calibration length."""

    name: str
    pattern: HeadPattern


def candidates_for_budget(seq_len: int, budget: float) -> list[Candidate]:
    """A-shape, vertical-slash and block-sparse sized to cover about `budget` of the causal tiles.

    Density of keeping `w` keys per row is about `2 w / T`, so each pattern gets `budget * T / 2`
    keys per row: A-shape 64 sinks plus a window; vertical-slash split 1:6 like 1000/6096;
    block-sparse that many keys in blocks of 64.
    """
    keys = max(128, int(budget * seq_len / 2))
    vertical = max(64, keys // 7)
    return [
        Candidate("a_shape", AShape(sinks=64, window=max(1, keys - 64))),
        Candidate(
            "vertical_slash", VerticalSlash(vertical=vertical, slash=max(64, keys - vertical))
        ),
        Candidate("block_sparse", BlockSparse(top_k=max(3, keys // 64))),
    ]


def _plan(q: torch.Tensor, k: torch.Tensor, pattern: HeadPattern) -> Any:
    import torch

    from ragline.attention.patterns import block_sparse_indices, vertical_slash_indices
    from ragline.kernels import plan_banded, plan_block_sparse, plan_vertical_slash

    b, h, t, _ = q.shape
    lens = torch.full((b,), t, dtype=torch.int32, device=q.device)
    if isinstance(pattern, AShape):
        return plan_banded(pattern.sinks, pattern.window, lens, t, torch.arange(h, device=q.device))
    if isinstance(pattern, VerticalSlash):
        v_idx, s_idx = vertical_slash_indices(q, k, pattern.vertical, pattern.slash)
        return plan_vertical_slash(v_idx, s_idx, lens, t)
    assert isinstance(pattern, BlockSparse)
    idx = block_sparse_indices(q, k, pattern.top_k)
    return plan_block_sparse(idx, lens, t, compact=True)


def attention_recall(q: torch.Tensor, k: torch.Tensor, plans: list[Any]) -> torch.Tensor:
    """`[P, H]` mean over query rows of the softmax mass each plan keeps (batch 1).

    The mass row `i` keeps is `exp(lse_plan_i - lse_dense_i)`: the sparse op's own log-sum-exp
    over the keys it reads against the dense one, so the recall is exactly that of the kernel's
    pattern, computed in one launch per plan (the reference ops on a CPU), never as `T x T`.

    Args:
        q: `[1, H, T, D]`; k: `[1, H_kv, T, D]`; plans: `VerticalSlashPlan`/`BlockSparsePlan`s.
    """
    import torch

    from ragline.kernels import BlockSparsePlan, block_sparse, plan_banded, vertical_slash

    _, h, t, _ = q.shape
    lens = torch.full((1,), t, dtype=torch.int32, device=q.device)
    dense_plan = plan_banded(0, t, lens, t, torch.arange(h, device=q.device))
    _, lse_dense = vertical_slash(q, k, k, dense_plan)
    out = []
    for plan in plans:
        op = block_sparse if isinstance(plan, BlockSparsePlan) else vertical_slash
        _, lse = op(q, k, k, plan)
        out.append(torch.exp(lse[0] - lse_dense[0]).mean(-1).float().cpu())
    return torch.stack(out)


VS_SCALES = (1.0, 0.6, 0.35, 0.2)
"""Size factors tried for vertical-slash, so each head can get one whose real density fits."""

_SLACK = 1.1
"""A candidate counts as equal-cost when its measured density is within 10 % of A-shape's."""


def _scaled(vs: VerticalSlash, factor: float) -> VerticalSlash:
    # The index builder always keeps 64 sink columns and 64 local diagonals.
    return VerticalSlash(
        vertical=max(64, round(vs.vertical * factor)), slash=max(64, round(vs.slash * factor))
    )


def calibrate_model(
    layers_qk: list[list[tuple[torch.Tensor, torch.Tensor]]],
    model_name: str,
    seq_len: int,
    budget: float,
) -> tuple[SparsePrefillConfig, dict[str, Any]]:
    """Pick, per head, the equal-cost candidate with the best mean recall over samples.

    Cost is the measured plan density (tiles the kernel computes), not the nominal keys per
    row: on real queries estimated slashes scatter, and block-rounded runs can cost twice
    their nominal size. A-shape's density (fixed by its sizes) sets each head's cost; block-
    sparse is sized to the same keys per row; vertical-slash is tried at `VS_SCALES` of its
    nominal sizes and each head uses the largest whose mean density is within 10 % of the
    cost (else the smallest).

    Args:
        layers_qk: per sample, per layer `(q [1,H,T,D], k [1,H_kv,T,D])`.

    Returns:
        The config and a report: per candidate, mean recall and measured density; the
        chosen config's mean recall and mean density.
    """
    import torch

    from ragline.kernels.density import plan_density_per_slot

    a_shape, vs, block = candidates_for_budget(seq_len, budget)
    cands = [a_shape, block] + [
        Candidate(f"vertical_slash x{f:g}", _scaled(cast(VerticalSlash, vs.pattern), f))
        for f in VS_SCALES
    ]
    n_layers = len(layers_qk[0])
    recall = [torch.zeros(0)] * n_layers  # per layer [P, H], summed over samples
    density = [torch.zeros(0)] * n_layers
    for sample in layers_qk:
        for layer, (q, k) in enumerate(sample):
            plans = [_plan(q, k, c.pattern) for c in cands]
            rec = attention_recall(q, k, plans)
            dens = torch.tensor([plan_density_per_slot(p) for p in plans])
            first = recall[layer].numel() == 0
            recall[layer] = rec if first else recall[layer] + rec
            density[layer] = dens if first else density[layer] + dens
    n = len(layers_qk)
    rows, chosen_density = [], []
    for layer in range(n_layers):
        rec, dens = recall[layer] / n, density[layer] / n  # [P, H]
        row = []
        for hh in range(rec.shape[1]):
            cost = float(dens[0, hh]) * _SLACK
            fits = [i for i in range(2, len(cands)) if float(dens[i, hh]) <= cost]
            pool = [0, 1, fits[0] if fits else len(cands) - 1]
            best = max(pool, key=lambda i: float(rec[i, hh]))
            row.append(
                cands[best].pattern.model_copy(update={"recall": round(float(rec[best, hh]), 4)})
            )
            chosen_density.append(float(dens[best, hh]))
        rows.append(row)
    config = SparsePrefillConfig(
        model=model_name, layers=rows, budget=budget, samples=n, seq_len=seq_len
    )
    report = {
        "candidates": [
            {
                "pattern": c.name,
                "sizes": c.pattern.model_dump(exclude={"recall", "pattern"}),
                "density": float(torch.stack([d[i] for d in density]).mean() / n),
                "mean_recall": float(torch.stack([r[i] for r in recall]).mean() / n),
            }
            for i, c in enumerate(cands)
        ],
        "chosen_mean_recall": float(
            sum(p.recall or 0.0 for row in rows for p in row) / sum(len(r) for r in rows)
        ),
        "chosen_mean_density": sum(chosen_density) / len(chosen_density),
        "chosen_patterns": {
            name: sum(p.pattern == name for row in rows for p in row)
            for name in ("a_shape", "vertical_slash", "block_sparse")
        },
    }
    return config, report
