"""Offline per-head pattern search: attention-mass recall of equal-cost candidates, best per head.

For each sample, each layer's queries and keys are captured from a dense pass; per head, the
recall of a candidate is the softmax mass its pattern keeps, averaged over query rows, read
from the sparse ops' log-sum-exps (no `T x T` matrix is ever held), so a recall describes
exactly what the kernels will compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragline.attention.config import (
    AShape,
    BlockSparse,
    HeadPattern,
    SparsePrefillConfig,
    VerticalSlash,
)

if TYPE_CHECKING:
    import torch

__all__ = ["Candidate", "attention_recall", "calibrate_model", "candidates_for_budget"]


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


def calibrate_model(
    layers_qk: list[list[tuple[torch.Tensor, torch.Tensor]]],
    model_name: str,
    seq_len: int,
    budget: float,
) -> tuple[SparsePrefillConfig, dict[str, Any]]:
    """Pick, per head, the candidate with the best mean recall over samples.

    Args:
        layers_qk: per sample, per layer `(q [1,H,T,D], k [1,H_kv,T,D])`.

    Returns:
        The config and a report: per candidate, mean recall and measured density.
    """
    import torch

    cands = candidates_for_budget(seq_len, budget)
    n_layers = len(layers_qk[0])
    recall_sum: list[torch.Tensor] = [torch.zeros(0)] * n_layers
    density_sum = torch.zeros(len(cands))
    from ragline.kernels.density import plan_density

    for sample in layers_qk:
        for layer, (q, k) in enumerate(sample):
            plans = [_plan(q, k, c.pattern) for c in cands]
            rec = attention_recall(q, k, plans)
            recall_sum[layer] = rec if recall_sum[layer].numel() == 0 else recall_sum[layer] + rec
            density_sum += torch.tensor([plan_density(p) for p in plans])
    n = len(layers_qk)
    rows = []
    for layer in range(n_layers):
        rec = recall_sum[layer] / n  # [P, H]
        best = rec.argmax(0)
        rows.append([
            cands[int(c)].pattern.model_copy(update={"recall": round(float(rec[int(c), hh]), 4)})
            for hh, c in enumerate(best)
        ])  # fmt: skip
    config = SparsePrefillConfig(
        model=model_name, layers=rows, budget=budget, samples=n, seq_len=seq_len
    )
    report = {
        "candidates": [
            {
                "pattern": c.name,
                "sizes": c.pattern.model_dump(exclude={"recall", "pattern"}),
                "density": float(density_sum[i] / (n * n_layers)),
                "mean_recall": float(torch.stack([r[i] for r in recall_sum]).mean() / n),
            }
            for i, c in enumerate(cands)
        ],
        "chosen_mean_recall": float(
            sum(p.recall or 0.0 for row in rows for p in row) / sum(len(r) for r in rows)
        ),
    }
    return config, report
