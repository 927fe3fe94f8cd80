"""Sparse-prefill benchmark cases: index builders + kernels, tile density, sampled-row parity."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ragline.attention.patterns import block_sparse_plan, vertical_slash_indices
from ragline.attention.sparse import _full_lengths
from ragline.kernels import (
    BandedPlan,
    BlockSparsePlan,
    VerticalSlashPlan,
    block_sparse,
    plan_banded,
    plan_vertical_slash,
    vertical_slash,
)
from ragline.kernels.block_sparse import block_sparse_mask
from ragline.kernels.vertical_slash import vertical_slash_mask

Plan = VerticalSlashPlan | BandedPlan | BlockSparsePlan


@dataclass(frozen=True)
class Case:
    """One pattern at one budget: `build(q, k)` makes the plan (index building), `run` the kernel."""

    pattern: str
    indices: str
    budget: str
    build: Callable[[torch.Tensor, torch.Tensor], Plan]

    def run(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: Plan, **kw: Any) -> Any:
        if isinstance(plan, BlockSparsePlan):
            return block_sparse(q, k, v, plan, **kw)
        return vertical_slash(q, k, v, plan, **kw)


def _lens(q: torch.Tensor) -> torch.Tensor:
    """Full lengths, cached per shape as the runtime's layer holds them (not rebuilt per call)."""
    return _full_lengths(q.shape[0], q.shape[2], q.device)


@functools.lru_cache(maxsize=8)
def _heads(h: int, device: torch.device) -> torch.Tensor:
    """`0..h-1` int32: the head list a layer's patterns hold, built once per device."""
    return torch.arange(h, device=device, dtype=torch.int32)


def block_sparse_case(top_k: int) -> Case:
    def build(q: torch.Tensor, k: torch.Tensor) -> Plan:
        return block_sparse_plan(q, k, top_k, _lens(q), heads=_heads(q.shape[1], q.device))

    return Case("block_sparse", f"top{top_k}", f"top-{top_k} blocks of 64", build)


def banded_case(n_vertical: int, n_slash: int, pattern: str = "vertical_slash") -> Case:
    """First `n_vertical` columns and `n_slash` nearest diagonals (A-shape is the same shape)."""

    def build(q: torch.Tensor, k: torch.Tensor) -> Plan:
        return plan_banded(n_vertical, n_slash, _lens(q), q.shape[2], _heads(q.shape[1], q.device))

    indices = "fixed" if pattern == "a_shape" else "banded"
    return Case(pattern, indices, f"{n_vertical}/{n_slash}", build)


def dense_case(n: int) -> Case:
    """Every diagonal through the vertical-slash kernel: its raw flash rate against cuDNN."""
    case = banded_case(0, n)
    return Case(case.pattern, case.indices, f"0/{n} (dense)", case.build)


def estimated_case(n_vertical: int, n_slash: int, label: str) -> Case:
    def build(q: torch.Tensor, k: torch.Tensor) -> Plan:
        v_idx, s_idx = vertical_slash_indices(q, k, n_vertical, n_slash)
        return plan_vertical_slash(
            v_idx, s_idx, _lens(q), q.shape[2], heads=_heads(q.shape[1], q.device)
        )

    return Case("vertical_slash", label, f"{n_vertical}/{n_slash}", build)


def real_indices_case(path: str) -> tuple[int, Case]:
    """Vertical-slash on index sets a real model produced (`real_density.py`), at their length.

    The file holds, per full-attention layer and head of that model, the columns and diagonals
    estimated from its own last 64 queries; the benchmark's heads take them in turn (head `h`
    the `h mod n`-th set). `build` still runs the estimation on this run's queries and keys, so
    the time includes that cost, then plans the real sets: kernel speed on realistic structure
    (scattered diagonals make more, shorter runs than banded ones).
    """
    import gzip
    import json

    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    sets = [
        (v, s)
        for layer in data["heads"]
        for v, s in zip(layer["vertical"], layer["slash"], strict=True)
    ]
    n_vertical, n_slash, seq_len = data["vertical"], data["slash"], data["seq_len"]

    made: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def build(q: torch.Tensor, k: torch.Tensor) -> Plan:
        if q.shape[2] != seq_len:
            raise ValueError(f"{path}: indices are for {seq_len} tokens, not {q.shape[2]}")
        vertical_slash_indices(q, k, n_vertical, n_slash)  # the estimation's cost, not its result
        h = q.shape[1]
        key = (h, str(q.device))
        if key not in made:  # the file's lists become tensors once, outside what is timed after
            v = [sets[i % len(sets)][0] for i in range(h)]
            s = [sets[i % len(sets)][1] for i in range(h)]
            made[key] = (torch.tensor([v], device=q.device), torch.tensor([s], device=q.device))
        v_idx, s_idx = made[key]
        return plan_vertical_slash(
            v_idx, s_idx, _lens(q), seq_len, heads=_heads(q.shape[1], q.device)
        )

    label = f"{n_vertical}/{n_slash} from {data['model']}"
    return seq_len, Case("vertical_slash", "estimated_real", label, build)


def reference_cases() -> list[Case]:
    """The issue's reference budgets."""
    return [
        block_sparse_case(100),
        banded_case(1000, 6096),
        estimated_case(1000, 6096, "estimated_random"),
        banded_case(128, 3968, pattern="a_shape"),
    ]


def _block_rows(plan: Plan, b: int, s: int, m: int) -> torch.Tensor:
    """Mask rows of query block `m`, from the reference mask functions on a sliced plan view."""
    fn = block_sparse_mask if isinstance(plan, BlockSparsePlan) else vertical_slash_mask
    return fn(plan, b, s, rows=slice(m * plan.block_m, (m + 1) * plan.block_m))


def sampled_parity(
    case: Case,
    plan: Plan,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    heads: list[int],
) -> dict[str, float]:
    """Kernel vs fp32 reference and vs SDPA with the expanded mask, on sampled query blocks.

    Errors are reported over all sampled rows and over the last two query blocks alone (where
    the patterns differ most from dense); rows and keys past a sequence's length are excluded.
    """
    b_sz, h, _, d = q.shape
    bm = plan.block_m
    group = h // k.shape[1]
    worst = {"rel_err_vs_ref": 0.0, "max_abs_err_vs_ref": 0.0, "rel_err_last_blocks": 0.0,
             "max_abs_err_last_blocks": 0.0, "ref_vs_sdpa_max_abs": 0.0, "nan": False}  # fmt: skip
    for b in range(b_sz):
        n = int(plan.seq_lens[b])
        n_m = -(-n // bm)
        blocks = sorted({0, n_m // 3, n_m // 2, max(0, n_m - 2), n_m - 1})
        for s in heads:
            parts = [
                (m, torch.arange(m * bm, min(n, (m + 1) * bm), device=q.device)) for m in blocks
            ]
            rows = torch.cat([r for _, r in parts])
            mask = torch.cat([_block_rows(plan, b, s, m)[: len(r), :n] for m, r in parts])
            qs = q[b, s, rows].float()
            ks, vs = k[b, s // group, :n].float(), v[b, s // group, :n].float()
            scores = (qs @ ks.T) / math.sqrt(d)
            ref = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ vs
            sdpa = torch.nn.functional.scaled_dot_product_attention(
                qs[None, None], ks[None, None], vs[None, None], attn_mask=mask[None, None]
            )[0, 0]
            got = out[b, s, rows].float()
            last = rows >= max(0, n_m - 2) * bm
            for key, sel in (("vs_ref", slice(None)), ("last_blocks", last)):
                g, r = got[sel], ref[sel]
                k_rel = "rel_err_" + key
                k_max = "max_abs_err_" + key
                worst[k_rel] = max(worst[k_rel], ((g - r).norm() / r.norm()).item())
                worst[k_max] = max(worst[k_max], (g - r).abs().max().item())
            worst["ref_vs_sdpa_max_abs"] = max(
                worst["ref_vs_sdpa_max_abs"], (ref - sdpa).abs().max().item()
            )
            worst["nan"] = worst["nan"] or bool(torch.isnan(got).any())
    return worst
