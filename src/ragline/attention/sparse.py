"""Per-layer dispatch of sparse prefill: each head to its pattern, one kernel launch per pattern kind."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragline.attention.config import AShape, BlockSparse, Dense, SparsePrefillConfig, VerticalSlash

if TYPE_CHECKING:
    import torch

__all__ = ["DENSE_ABOVE", "FORCED", "LayerPatterns", "SparsePrefill", "sparse_prefill_layer"]

#: Columns and diagonals every estimated vertical-slash head keeps (sinks, local band).
FORCED = 64
#: Tile density above which a vertical-slash head runs dense SDPA: the kernels compute their
#: tiles at 0.71-0.88 of cuDNN's rate (H100/H200, Llama-3-8B shape, 32K-128K), so past about
#: 0.7 of the tiles the sparse kernel is the slower way to the same attention.
DENSE_ABOVE = 0.7


@dataclass(frozen=True)
class LayerPatterns:
    """One layer's heads grouped by kernel, with per-head budgets (built once per device)."""

    vs_heads: torch.Tensor  # [S1] query heads on the vertical-slash kernel (dense: dense_kernel)
    vs_heads32: torch.Tensor  # [S1] the same, int32, as the kernel plans hold them
    vs_estimated: torch.Tensor  # [E] long: positions in vs_heads of heads with estimated indices
    vs_vertical: torch.Tensor  # [S1] column budget (A-shape: sinks)
    vs_slash: torch.Tensor  # [S1] diagonal budget (A-shape: window; dense: all)
    bs_heads: torch.Tensor  # [S2] query heads on the block-sparse kernel
    bs_heads32: torch.Tensor  # [S2] the same, int32, as the block-sparse plan holds them
    bs_top_k: torch.Tensor  # [S2]
    sdpa_heads: torch.Tensor  # [S3] query heads configured dense, run by SDPA
    max_vertical: int
    max_slash: int
    any_estimated: bool
    max_top_k: int
    mixed_top_k: bool
    """Block-sparse heads of different budgets: one ranked top-k is cut per head."""
    band: tuple[int, int] | None
    """(sinks, window) when every vertical-slash-kernel head is the same A-shape: a banded plan."""
    estimated: tuple[int, ...]
    """Query heads of `vs_heads` whose indices are estimated, on the host (no sync to select)."""
    bs_all: bool
    """Every query head is block-sparse, in order: the kernel reads q itself, no head copy."""


def _layer(patterns: list, device: torch.device, *, dense_kernel: bool = False) -> LayerPatterns:
    """Group a layer's head patterns by kernel.

    Heads configured `Dense` run SDPA, which is faster than any kernel computing every tile;
    `dense_kernel` puts them on the vertical-slash kernel with every diagonal instead, as a
    control that measures the kernels alone (`dense_above` infinite).
    """
    import torch

    vs, est, nv, ns, bs, topk, sdpa = [], [], [], [], [], [], []
    for h, p in enumerate(patterns):
        if isinstance(p, BlockSparse):
            bs.append(h)
            topk.append(p.top_k)
            continue
        if isinstance(p, Dense) and not dense_kernel:
            sdpa.append(h)
            continue
        vs.append(h)
        est.append(isinstance(p, VerticalSlash))
        if isinstance(p, VerticalSlash):
            sizes = (p.vertical, p.slash)
        elif isinstance(p, AShape):
            sizes = (p.sinks, p.window)
        else:
            assert isinstance(p, Dense)
            sizes = (0, 2**31 - 1)
        nv.append(sizes[0])
        ns.append(sizes[1])

    def t(x: list, dtype: torch.dtype = torch.long) -> torch.Tensor:
        return torch.tensor(x, dtype=dtype, device=device)

    shapes = {
        (patterns[h].sinks, patterns[h].window) if isinstance(patterns[h], AShape) else None
        for h in vs
    }
    band = next(iter(shapes)) if len(shapes) == 1 else None
    return LayerPatterns(
        t(vs), t(vs, torch.int32), t([i for i, e in enumerate(est) if e]), t(nv), t(ns), t(bs),
        t(bs, torch.int32), t(topk), t(sdpa),
        max(nv, default=0), max(ns, default=0), any(est), max(topk, default=0),
        len(set(topk)) > 1, band, tuple(h for h, e in zip(vs, est, strict=True) if e),
        bs == list(range(len(patterns))),
    )  # fmt: skip


class SparsePrefill:
    """A model's sparse-prefill runtime: patterns per layer, and the length it switches on at."""

    def __init__(
        self, config: SparsePrefillConfig, *, min_len: int, dense_above: float = DENSE_ABOVE
    ) -> None:
        self.config = config
        self.min_len = min_len
        self.dense_above = dense_above
        """Tile density past which a head on the vertical-slash kernel runs dense instead."""
        self.sparse_calls = 0
        """Layer calls that took the sparse path (the rest went to dense SDPA)."""
        self.dense_heads = 0
        """Heads of sparse-path calls whose plan was too dense to pay off and ran dense SDPA."""
        self._layers: dict[tuple[int, str], LayerPatterns] = {}

    def layer(self, idx: int, device: torch.device) -> LayerPatterns:
        key = (idx, str(device))
        if key not in self._layers:
            # A dense head's plan computes every tile (a measured density of 1 or a little
            # more: diagonal tiles count whole), so any finite guard would send it to SDPA after
            # building its indices; it goes there directly unless the guard is off.
            dense_kernel = math.isinf(self.dense_above)
            self._layers[key] = _layer(self.config.layers[idx], device, dense_kernel=dense_kernel)
        return self._layers[key]


@functools.lru_cache(maxsize=16)
def _full_lengths(b: int, t: int, device: torch.device) -> torch.Tensor:
    """`[b]` int32, all `t`: the lengths of a batch of unpadded prompts."""
    import torch

    return torch.full((b,), t, dtype=torch.int32, device=device)


@functools.lru_cache(maxsize=16)
def _groups(h: int, h_kv: int, device: torch.device) -> torch.Tensor:
    """`[h]` long: the key head of each query head, in consecutive GQA groups."""
    import torch

    from ragline.attention.patterns import _group

    return torch.arange(h, device=device) // _group(h, h_kv)


def _budgeted(idx: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """Keep the first `budget[s]` entries of each slot's descending-score list; -1 elsewhere."""
    import torch

    pos = torch.arange(idx.shape[-1], device=idx.device)
    return torch.where(pos < budget[:, None], idx, -1)


def _vs_indices(
    q: torch.Tensor, k: torch.Tensor, lp: LayerPatterns, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[B, S1, NV]`, `[B, S1, NS]` indices: fixed ramps, estimated top-k where configured."""
    import torch

    from ragline.attention.patterns import vertical_slash_scores

    b, _, t, _ = q.shape
    nv, ns = min(lp.max_vertical, t), min(lp.max_slash, t)
    ramp_v = torch.arange(max(nv, 1), device=q.device).expand(b, lp.vs_heads.numel(), -1)
    ramp_s = torch.arange(ns, device=q.device).expand(b, lp.vs_heads.numel(), -1)
    vertical, slash = ramp_v, ramp_s
    if lp.any_estimated:
        # at the model's own scale, as calibration (whose captured queries fold it in) scored;
        # only the last query rows are read: nothing of q is copied whole
        v_score, s_score = vertical_slash_scores(q, k, t, scale=scale, heads=lp.estimated)
        v_score[..., :FORCED] = float("inf")  # attention sinks
        s_score[..., :FORCED] = float("inf")  # the local band
        v_top, s_top = v_score.topk(max(nv, 1), -1).indices, s_score.topk(ns, -1).indices
        if len(lp.estimated) == lp.vs_heads.numel():
            vertical, slash = v_top, s_top
        else:  # positions, not a mask: a boolean index would wait for the GPU
            vertical = ramp_v.clone().index_copy_(1, lp.vs_estimated, v_top)
            slash = ramp_s.clone().index_copy_(1, lp.vs_estimated, s_top)
    return _budgeted(vertical, lp.vs_vertical), _budgeted(slash, lp.vs_slash)


def _dense_heads(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: torch.Tensor,
    kv_index: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Causal SDPA of query heads `heads` (their key/value heads gathered): `[B, len(heads), T, D]`."""
    import torch

    sdpa = torch.nn.functional.scaled_dot_product_attention
    if heads.numel() == q.shape[1]:  # every head (in order): GQA in place, no K/V copies
        return sdpa(q, k, v, is_causal=True, scale=scale, enable_gqa=k.shape[1] != q.shape[1])
    kv = kv_index[heads]
    return sdpa(q.index_select(1, heads), k.index_select(1, kv), v.index_select(1, kv),
                is_causal=True, scale=scale)  # fmt: skip


def sparse_prefill_layer(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lp: LayerPatterns,
    scale: float,
    *,
    dense_above: float = DENSE_ABOVE,
    runtime: SparsePrefill | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal prefill attention of one layer with each head on its pattern: `[B, H, T, D]`.

    Args:
        q: `[B, H, T, D]`; k, v: `[B, H_kv, T, D]` (GQA read in place); no padding.
        dense_above: heads on the vertical-slash kernel with per-prompt indices (estimated
            vertical-slash, and in mixed layers A-shape) whose plan would compute more
            than this share of the causal tiles run dense SDPA instead; a layer of one A-shape
            (a banded plan, its size fixed by the config) is not checked.
        runtime: counts those heads in `runtime.dense_heads`.
        out: `[B, H, T, D]` to write into, any strides with unit stride along D (a transposed
            `[B, T, H, D]` buffer spares the copy back to a framework's layout); a layer of
            dense heads returns SDPA's own output instead.
    """
    import torch

    from ragline.attention.patterns import block_sparse_plan
    from ragline.kernels import block_sparse, plan_banded, plan_vertical_slash, vertical_slash
    from ragline.kernels.density import vertical_slash_tile_density

    b, h, t, _ = q.shape
    # shape-only tensors, cached: at 16K tokens the host's launches bound the index build
    seq_lens = _full_lengths(b, t, q.device)

    def kv_index() -> torch.Tensor:
        return _groups(h, k.shape[1], q.device)

    if lp.sdpa_heads.numel() == h:  # a dense layer: SDPA's output as it is, no copy
        return _dense_heads(q, k, v, lp.sdpa_heads, kv_index(), scale)
    out = torch.empty_like(q) if out is None else out
    if lp.sdpa_heads.numel():
        out[:, lp.sdpa_heads] = _dense_heads(q, k, v, lp.sdpa_heads, kv_index(), scale)
    if lp.vs_heads.numel() and lp.band is not None:
        # a banded plan holds no index tensors: nothing to cache between layers
        band_plan = plan_banded(*lp.band, seq_lens, t, lp.vs_heads32)
        vertical_slash(q, k, v, band_plan, scale=scale, out=out)
    elif lp.vs_heads.numel():
        vertical, slash = _vs_indices(q, k, lp, scale)
        vs_plan = plan_vertical_slash(vertical, slash, seq_lens, t, heads=lp.vs_heads32)
        # Estimated indices can scatter into nearly every tile (real queries and keys at 32K
        # gave density 0.85 for 1000/6096): there dense SDPA is faster than the sparse kernel.
        dense = vertical_slash_tile_density(vs_plan).amax(0) > dense_above
        if bool(dense.any()):  # one host sync per layer, at prompts of 16K tokens and more
            heads = lp.vs_heads[dense]
            out[:, heads] = _dense_heads(q, k, v, heads, kv_index(), scale)
            keep = ~dense
            if runtime is not None:
                runtime.dense_heads += int(heads.numel())
            vs_plan = plan_vertical_slash(
                vertical[:, keep], slash[:, keep], seq_lens, t, heads=lp.vs_heads[keep]
            )
        if vs_plan.heads.numel():
            vertical_slash(q, k, v, vs_plan, scale=scale, out=out)
    if lp.bs_heads.numel():
        # a layer of block-sparse heads pools q itself: no 1 GB head copy at 128K tokens
        q_bs, kv_bs = (
            (q, None) if lp.bs_all else (q.index_select(1, lp.bs_heads), kv_index()[lp.bs_heads])
        )
        bs_plan = block_sparse_plan(
            q_bs, k, lp.max_top_k, seq_lens, heads=lp.bs_heads32, kv_index=kv_bs,
            budgets=lp.bs_top_k if lp.mixed_top_k else None,
        )  # fmt: skip
        block_sparse(q, k, v, bs_plan, scale=scale, out=out)
    return out
