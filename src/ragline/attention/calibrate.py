"""Offline per-head pattern search: attention-mass recall of sized candidates, a budget shared by all heads.

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
    Dense,
    HeadPattern,
    SparsePrefillConfig,
    VerticalSlash,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "SCALES",
    "Candidate",
    "allocate_budget",
    "attention_recall",
    "calibrate_model",
    "candidate_grid",
    "candidates_for_budget",
    "recall_and_tail",
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
    """`[P, H]` mean over query rows of the softmax mass each plan keeps (batch 1)."""
    return recall_and_tail(q, k, plans, 1)[0]


def recall_and_tail(
    q: torch.Tensor, k: torch.Tensor, plans: list[Any], last_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[P, H]` softmax mass each plan keeps, averaged over all query rows and over the last rows.

    On a GPU the mass row `i` keeps is `exp(lse_plan_i - lse_dense_i)`: the sparse op's own
    log-sum-exp over the keys it reads against the dense one, so the recall is exactly that of
    the kernel's pattern, in one launch per plan, never as `T x T`. On a CPU the dense softmax
    of each head is computed once, in row chunks, and every plan's mask (the one its reference
    op spells out) is summed over it: the same quantity, one matmul per head instead of one per
    plan, and any head dim (inputs the kernels refuse take this path on a GPU too).
    The last rows are where a prompt ends (the question, the generation cue): the first answer
    token is read from them, so calibration can weight them. Scores use the scale `1/sqrt(D)`
    (`capture_queries_keys` folds a model's own scale into its queries).

    Args:
        q: `[1, H, T, D]`; k: `[1, H_kv, T, D]`; plans: `VerticalSlashPlan`/`BlockSparsePlan`s.
        last_rows: how many final rows the second mean covers.
    """
    import torch

    from ragline.kernels import BlockSparsePlan, block_sparse, plan_banded, vertical_slash
    from ragline.kernels._common import kernel_refusal, use_triton

    _, h, t, _ = q.shape
    tail_from = t - min(max(last_rows, 1), t)
    if not use_triton(q) or kernel_refusal(q.shape[-1], q.dtype, q.device) is not None:
        kept = _kept_mass_by_masks(q, k, plans)  # [P, H, T]
        return kept.mean(-1), kept[..., tail_from:].mean(-1)
    lens = torch.full((1,), t, dtype=torch.int32, device=q.device)
    dense_plan = plan_banded(0, t, lens, t, torch.arange(h, device=q.device))
    _, lse_dense = vertical_slash(q, k, k, dense_plan)
    whole, tail = [], []
    for plan in plans:
        op = block_sparse if isinstance(plan, BlockSparsePlan) else vertical_slash
        _, lse = op(q, k, k, plan)
        kept_ = torch.exp(lse[0] - lse_dense[0]).float()  # [H, T]
        whole.append(kept_.mean(-1).cpu())
        tail.append(kept_[:, tail_from:].mean(-1).cpu())
    return torch.stack(whole), torch.stack(tail)


def _kept_mass_by_masks(q: torch.Tensor, k: torch.Tensor, plans: list[Any]) -> torch.Tensor:
    """`[P, H, T]` dense softmax mass inside each plan's mask, per head and row (batch 1)."""
    import math

    import torch

    from ragline.kernels import BlockSparsePlan
    from ragline.kernels.block_sparse import block_sparse_mask
    from ragline.kernels.vertical_slash import vertical_slash_mask

    _, h, t, d = q.shape
    group = h // k.shape[1]
    scale = 1.0 / math.sqrt(d)
    slots = []
    for i, plan in enumerate(plans):
        slot_of = {int(head): s for s, head in enumerate(plan.heads.tolist())}
        if len(slot_of) != h:
            raise ValueError(f"recall: plan {i} covers heads {sorted(slot_of)}, expected all {h}")
        slots.append(slot_of)
    # Bounds the `[rows, T]` float32 scores and probabilities to ~128 MB each.
    chunk = max(64, (1 << 25) // max(t, 1))
    kept = torch.zeros(len(plans), h, t)
    for head in range(h):
        kh = k[0, head // group].float()
        for lo in range(0, t, chunk):
            hi = min(t, lo + chunk)
            # keys past the chunk's last row are masked for every row: leave them out
            scores = (q[0, head, lo:hi].float() @ kh[:hi].T) * scale
            pos = torch.arange(hi, device=q.device)
            scores.masked_fill_(pos[None, :] > pos[lo:hi, None], float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            for p, plan in enumerate(plans):
                mask_of = (
                    block_sparse_mask if isinstance(plan, BlockSparsePlan) else vertical_slash_mask
                )
                mask = mask_of(plan, 0, slots[p][head], slice(lo, hi))[:, :hi]
                kept[p, head, lo:hi] = (probs * mask).sum(-1).cpu()
    return kept


SCALES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
"""Size factors of the budget each pattern is tried at, so the allocation can give each head more
or less than the mean: a local head needs a short window, a retrieval head a wide one."""


def _scaled(pattern: HeadPattern, factor: float, seq_len: int) -> HeadPattern | None:
    """`pattern` with its keys per row times `factor`; None once it would read every key."""
    if isinstance(pattern, AShape):
        window = round(pattern.window * factor)
        return (
            None
            if pattern.sinks + window >= seq_len
            else AShape(sinks=pattern.sinks, window=max(1, window))
        )
    if isinstance(pattern, VerticalSlash):
        # The index builder always keeps 64 sink columns and 64 local diagonals.
        vertical = max(64, round(pattern.vertical * factor))
        slash = max(64, round(pattern.slash * factor))
        return (
            None if vertical + slash >= seq_len else VerticalSlash(vertical=vertical, slash=slash)
        )
    assert isinstance(pattern, BlockSparse)
    top_k = max(3, round(pattern.top_k * factor))
    return None if top_k * 64 >= seq_len else BlockSparse(top_k=top_k)


def candidate_grid(seq_len: int, budget: float) -> list[Candidate]:
    """Each pattern of `candidates_for_budget` at `SCALES` of its size (deduplicated), then dense."""
    out: list[Candidate] = []
    seen: set[HeadPattern] = set()
    for base in candidates_for_budget(seq_len, budget):
        for f in SCALES:
            pattern = _scaled(base.pattern, f, seq_len)
            if pattern is not None and pattern not in seen:
                seen.add(pattern)
                out.append(Candidate(f"{base.name} x{f:g}", pattern))
    return [*out, Candidate("dense", Dense())]


def allocate_budget(recall: torch.Tensor, density: torch.Tensor, budget: float) -> torch.Tensor:
    """Per head, the option index that maximises the summed recall at mean density <= `budget`.

    A Lagrangian relaxation: each head takes `argmax(recall - lam * density)`, with `lam` the
    smallest price (found by bisection) whose choices fit the budget; the slack left is then
    spent greedily on the upgrades with the most recall per unit of density. If even the
    cheapest option of every head exceeds the budget, those are returned.

    Args:
        recall, density: `[heads, options]`, every head of every layer (equal cost per unit of
            density, as all layers see the same length).
    """
    import torch

    r, d = recall.double(), density.double()
    n = r.shape[0]
    rows = torch.arange(n)
    cheapest = d.argmin(1)
    room = budget * n * (1 + 1e-6)  # float32 densities: 0.1 + 0.2 must fit a 0.3 budget
    if float(d[rows, cheapest].sum()) > room:
        return cheapest

    def pick(lam: float) -> torch.Tensor:
        return (r - lam * d).argmax(1)

    lo, hi = 0.0, 1.0
    while float(d[rows, pick(hi)].sum()) > room:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(d[rows, pick(mid)].sum()) > room:
            lo = mid
        else:
            hi = mid
    choice = pick(hi)
    slack = room - float(d[rows, choice].sum())
    while True:
        gain = r - r[rows, choice][:, None]
        extra = d - d[rows, choice][:, None]
        ok = (gain > 0) & (extra <= slack)
        if not bool(ok.any()):
            return choice
        ratio = torch.where(ok, gain / extra.clamp(min=1e-12), torch.tensor(-1.0, dtype=r.dtype))
        flat = int(ratio.argmax())
        h, o = divmod(flat, r.shape[1])
        slack -= float(extra[h, o])
        choice[h] = o


def calibrate_model(
    layers_qk: list[list[tuple[torch.Tensor, torch.Tensor]]],
    model_name: str,
    seq_len: int,
    budget: float,
    *,
    tail_weight: float = 0.0,
    tail_rows: int = 64,
    layer_ids: list[int] | None = None,
    num_layers: int | None = None,
    progress: bool = False,
) -> tuple[SparsePrefillConfig, dict[str, Any]]:
    """Per head, the pattern and size that maximise the model's mean recall at mean density <= budget.

    Every head is measured on `candidate_grid` (each pattern at several sizes, and dense): its
    recall averaged over samples, and its cost as the measured plan density (tiles the kernel
    computes), not the nominal keys per row, since on real queries estimated slashes scatter and
    block-rounded runs can cost twice their nominal size. `allocate_budget` then shares the
    budget across all heads of all layers: heads whose mass is local get small windows, heads
    that read far get more, and the mean density stays within the budget.

    With `tail_weight` w, a head's score is `(1 - w) * recall + w * tail recall`, the tail being
    the last `tail_rows` query rows, where a prompt's question and answer cue sit.

    Args:
        layers_qk: per sample, per layer `(q [1,H,T,D], k [1,H_kv,T,D])`.
        layer_ids, num_layers: when `layers_qk` covers only some of the model's layers (the
            full-attention ones of a model with sliding-window layers), their indices and the
            model's layer count; the other layers are written as `Dense`, since prefill leaves
            them to the model's own windowed attention.
        progress: draw a progress bar over (sample, layer) steps on stderr.

    Returns:
        The config and a report: per candidate, mean recall, tail recall and measured density
        over all heads; the chosen config's mean recall, tail recall and mean density.
    """
    import torch

    from ragline.kernels import plan_banded
    from ragline.kernels.density import plan_density_per_slot
    from ragline.progress import progress_bar

    cands = candidate_grid(seq_len, budget)
    n_layers = len(layers_qk[0])
    if not 0.0 <= tail_weight <= 1.0:
        raise ValueError(f"tail_weight must be in [0, 1], got {tail_weight}")
    if (layer_ids is None) != (num_layers is None) or (
        layer_ids is not None
        and num_layers is not None
        and (
            len(set(layer_ids)) != n_layers
            or len(layer_ids) != n_layers
            or not all(0 <= i < num_layers for i in layer_ids)
        )
    ):
        raise ValueError(
            f"layer_ids {layer_ids} must name the {n_layers} captured layers, each once, "
            f"among num_layers={num_layers} (give both or neither)"
        )
    # per layer [P, H], summed over samples: recall, tail recall, density
    sums: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
    steps = [(layer, q, k) for sample in layers_qk for layer, (q, k) in enumerate(sample)]
    with progress_bar("measuring recall", total=len(steps), enabled=progress) as advance:
        for layer, q, k in steps:
            sparse = [c for c in cands if not isinstance(c.pattern, Dense)]
            plans = [_plan(q, k, c.pattern) for c in sparse]
            rec, tail = recall_and_tail(q, k, plans, tail_rows)
            dens = torch.tensor([plan_density_per_slot(p) for p in plans])
            # dense keeps all the mass, at the cost of every causal tile counted the same way
            full = plan_banded(0, q.shape[2], plans[0].seq_lens, q.shape[2], plans[0].heads)
            one = torch.ones(1, rec.shape[1])
            stats = [
                torch.cat([rec, one]),
                torch.cat([tail, one]),
                torch.cat([dens, torch.tensor([plan_density_per_slot(full)])]),
            ]
            sums[layer] = (
                stats
                if not sums[layer]
                else [a + b for a, b in zip(sums[layer], stats, strict=True)]
            )
            advance(1)
    n = len(layers_qk)
    all_rec, all_tail, all_dens = (
        torch.cat([sums[layer][i].T for layer in range(n_layers)]) / n for i in range(3)
    )  # each [layers * H, P]
    objective = (1 - tail_weight) * all_rec + tail_weight * all_tail
    choice = allocate_budget(objective, all_dens, budget).tolist()
    heads = sums[0][0].shape[1]
    rows = []
    for layer in range(n_layers):
        row = []
        for hh in range(heads):
            i, flat = choice[layer * heads + hh], layer * heads + hh
            rec_i = round(float(all_rec[flat, i]), 4)
            row.append(cands[i].pattern.model_copy(update={"recall": rec_i}))
        rows.append(row)
    # counted over the calibrated layers only, like `heads_chosen` below
    chosen_patterns = {
        name: sum(p.pattern == name for row in rows for p in row)
        for name in ("a_shape", "vertical_slash", "block_sparse", "dense")
    }
    if layer_ids is not None and num_layers is not None:
        by_id = dict(zip(layer_ids, rows, strict=True))
        rows = [by_id.get(i, [Dense()] * heads) for i in range(num_layers)]
    config = SparsePrefillConfig(
        model=model_name, layers=rows, budget=budget, samples=n, seq_len=seq_len
    )
    picked = torch.tensor(choice)
    flat_rows = torch.arange(len(choice))
    report = {
        "candidates": [
            {
                "pattern": c.name,
                "sizes": c.pattern.model_dump(exclude={"recall", "pattern"}),
                "density": float(all_dens[:, i].mean()),
                "mean_recall": float(all_rec[:, i].mean()),
                "tail_recall": float(all_tail[:, i].mean()),
                "heads_chosen": int((picked == i).sum()),
            }
            for i, c in enumerate(cands)
        ],
        "chosen_mean_recall": float(all_rec[flat_rows, picked].mean()),
        "chosen_min_recall": float(all_rec[flat_rows, picked].min()),
        "chosen_tail_recall": float(all_tail[flat_rows, picked].mean()),
        "tail_weight": tail_weight,
        "tail_rows": tail_rows,
        "chosen_mean_density": float(all_dens[flat_rows, picked].mean()),
        # at short lengths whole diagonal blocks alone can cost more than the budget
        "budget_met": float(all_dens[flat_rows, picked].mean()) <= budget * (1 + 1e-6),
        "chosen_patterns": chosen_patterns,
    }
    return config, report
