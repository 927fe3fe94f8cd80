"""Online index builders for sparse prefill, in torch on the inputs' device (no Python head loops).

- vertical-slash: from the softmax of the last `last_q` queries, the key columns with the most
  mass (vertical) and the diagonal offsets with the most mass (slash), forced sinks and local
  diagonals included;
- block-sparse: from mean-pooled query blocks against mean-pooled key blocks, the top-k key
  blocks per query block (the first block forced; the diagonal block is always computed);
- A-shape: from sizes alone (the first `sinks` columns and the `window` nearest diagonals).

Shapes: `q [B, H, T, D]`, `k [B, H_kv, T, D]`; returned indices are int32 and padded with -1.
`*_ref` versions spell the same statistics out with loops, for tests.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import torch

__all__ = [
    "a_shape_indices",
    "block_sparse_indices",
    "block_sparse_scores",
    "block_sparse_scores_ref",
    "vertical_slash_indices",
    "vertical_slash_scores",
    "vertical_slash_scores_ref",
]

# Head chunks keep the score buffers near this many bytes (a 1M-token head is 256 MiB at 64 rows).
_CHUNK_BYTES = 1 << 30


def _chunks(h: int, per_head: int) -> list[slice]:
    step = max(1, min(h, _CHUNK_BYTES // max(per_head, 1)))
    return [slice(i, min(h, i + step)) for i in range(0, h, step)]


def _kv_index(kv_index: torch.Tensor | None, h: int, k: torch.Tensor) -> torch.Tensor:
    """Key head of each query head: given, or `arange(H) // (H / H_kv)`."""
    import torch

    if kv_index is not None:
        return kv_index.to(device=k.device, dtype=torch.long)
    return torch.arange(h, device=k.device) // (h // k.shape[1])


def _kv_for(k: torch.Tensor, heads: slice, kv_index: torch.Tensor) -> torch.Tensor:
    """Key heads for the query heads of `heads` (gathered: GQA groups share them)."""
    return k.index_select(1, kv_index[heads])


def vertical_slash_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    seq_len: int,
    *,
    last_q: int = 64,
    kv_index: torch.Tensor | Sequence[int] | None = None,
    scale: float | None = None,
    heads: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and diagonal attention mass of the last `last_q` queries before `seq_len`.

    Returns `(vertical [B, H', T], slash [B, H', T])` float32 for the query heads `heads`
    (default all, `H' = H`): `vertical[j]` sums the softmax weight the last queries give key
    `j`; `slash[o]` sums the weight at offset `o = query - key`. `kv_index` `[H]` names the key
    head of each query head (default: consecutive GQA groups; a CUDA tensor costs a host sync,
    a list does not); `scale` is the model's softmax scale (default `1/sqrt(D)`).
    """
    import torch

    b, h, t, d = q.shape
    heads = list(range(h)) if heads is None else [int(x) for x in heads]
    if kv_index is None:
        kv = [x // (h // k.shape[1]) for x in range(h)]
    else:
        kv = [int(x) for x in (kv_index.tolist() if hasattr(kv_index, "tolist") else kv_index)]
    if len(kv) != h or not all(0 <= j < k.shape[1] for j in kv):
        raise ValueError(
            f"vertical_slash_scores: kv_index must name one of {k.shape[1]} key heads for each "
            f"of {h} query heads; got {kv}"
        )
    if not all(0 <= x < h for x in heads):
        raise ValueError(
            f"vertical_slash_scores: heads must be query heads 0..{h - 1}; got {heads}"
        )
    vertical = torch.zeros(b, len(heads), t, dtype=torch.float32, device=q.device)
    slash = torch.zeros_like(vertical)
    n = min(last_q, seq_len)
    if not heads or n == 0:
        return vertical, slash
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    # Keys are read back to front (column m is key seq_len - 1 - m), so that diagonal offsets
    # run forwards: row i's offset o sits at column n - 1 - i + o, and n - 1 columns of zero
    # weight after each row let one strided view add the diagonals up. Flipping a key head
    # costs far less than flipping the [rows, T] weights of each query head.
    width = seq_len + n - 1
    with torch.no_grad():  # index statistics: a `bmm(out=)` below, nothing to differentiate
        q_last = q[:, :, seq_len - n : seq_len].float() * scale
        rows = torch.arange(n, device=q.device)
        after = torch.arange(n - 1, device=q.device)[None, :] < (n - 1 - rows)[:, None]
        # bytes: a query head's scores and weights; a key head's bf16 flip and float32 copy
        per_query, per_key = 2 * b * n * width * 4, b * seq_len * d * 6
        for pos, keys in _flipped_keys(k[:, :, :seq_len], heads, kv, per_query, per_key):
            _add_head_sums(vertical, slash, q_last, keys, [heads[p] for p in pos], pos, after)
    return vertical, slash


def _flipped_keys(
    k: torch.Tensor, heads: list[int], kv: list[int], per_query: int, per_key: int
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Per batch of `_kv_batches`: its positions in `heads` and its key heads, flipped, float32."""
    keys, flipped = None, None
    for kv_heads, pos in _kv_batches(heads, kv, per_query, per_key):
        if kv_heads != flipped:  # batches of one long head's query heads share its keys
            keys = None  # let the last batch's keys go before the next are made
            keys = _take(k, 1, kv_heads).flip(-2).float()  # [B, c, L, D]
            flipped = kv_heads
        assert keys is not None
        yield pos, keys


def _add_head_sums(
    vertical: torch.Tensor,
    slash: torch.Tensor,
    q_last: torch.Tensor,
    keys: torch.Tensor,
    q_heads: list[int],
    pos: list[int],
    after: torch.Tensor,
) -> None:
    """Column and diagonal sums of query heads `q_heads` (grouped by key head, `r` per head of
    `keys [B, c, L, D]`, flipped) into positions `pos` of `vertical` and `slash`."""
    import torch

    b, c, seq_len, d = keys.shape
    n = q_last.shape[2]
    r = len(pos) // c
    width = seq_len + n - 1
    s = torch.empty(b * c, r * n, width, dtype=torch.float32, device=keys.device)
    s[..., seq_len:] = float("-inf")
    torch.bmm(
        _take(q_last, 1, q_heads).reshape(b * c, r * n, d),
        keys.reshape(b * c, seq_len, d).transpose(1, 2),
        out=s[..., :seq_len],
    )
    s = s.view(b, c * r, n, width)
    s[..., : n - 1].masked_fill_(after, float("-inf"))  # keys after each query row
    p = torch.softmax(s, -1)
    _put(vertical[..., :seq_len], 1, pos, p[..., :seq_len].sum(-2).flip(-1))
    diagonals = p.as_strided(
        (b, c * r, n, seq_len),
        (p.stride(0), p.stride(1), width - 1, 1),
        p.storage_offset() + n - 1,
    )
    _put(slash[..., :seq_len], 1, pos, diagonals.sum(-2))


def _kv_batches(
    heads: Sequence[int], kv: Sequence[int], per_query: int, per_key: int
) -> list[tuple[list[int], list[int]]]:
    """`(key heads, positions in heads)` batches for `vertical_slash_scores`, near `_CHUNK_BYTES`.

    `per_query` and `per_key` are the bytes a query head and a key head take in a batch. Each
    batch is a run of key heads that serve the same number of the listed query heads, so their
    products run as one batched matmul with no copy of a key head per query head; positions
    are grouped by key head, key heads in the order they first appear in `heads`.
    """
    groups: dict[int, list[int]] = {}
    for p, hh in enumerate(heads):
        groups.setdefault(kv[hh], []).append(p)
    sizes = {len(g) for g in groups.values()}
    out: list[tuple[list[int], list[int]]] = []
    if len(sizes) == 1:
        r = sizes.pop()
        step = _CHUNK_BYTES // (r * per_query + per_key)  # key heads with all their queries
        if step >= 1:
            kv_heads = list(groups)
            for i in range(0, len(kv_heads), step):
                run = kv_heads[i : i + step]
                out.append((run, [p for j in run for p in groups[j]]))
            return out
    # one key head at a time, its query heads split as the rest of the budget allows
    fit = max(1, (_CHUNK_BYTES - per_key) // max(per_query, 1))
    for j, pos in groups.items():
        out.extend(([j], pos[i : i + fit]) for i in range(0, len(pos), fit))
    return out


def _is_run(idx: Sequence[int]) -> bool:
    """Whether `idx` (non-empty) is consecutive ascending positions, a slice of its axis."""
    return list(idx) == list(range(idx[0], idx[0] + len(idx)))


def _take(x: torch.Tensor, dim: int, idx: Sequence[int]) -> torch.Tensor:
    """`x` at positions `idx` of `dim`: a view for a run of consecutive positions, else a copy."""
    if _is_run(idx):
        return x.narrow(dim, idx[0], len(idx))
    return x.index_select(dim, _device_index(tuple(idx), x.device))


def _put(dst: torch.Tensor, dim: int, idx: Sequence[int], src: torch.Tensor) -> None:
    """Write `src` into `dst` at positions `idx` of `dim` (a slice copy for a run)."""
    if _is_run(idx):
        dst.narrow(dim, idx[0], len(idx)).copy_(src)
    else:
        dst.index_copy_(dim, _device_index(tuple(idx), dst.device), src)


def _device_index(idx: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """`idx` as a long tensor on `device`; to a GPU from pinned memory, so the copy is queued
    on the stream and the host does not wait for the GPU."""
    import torch

    host = torch.tensor(idx, dtype=torch.long)
    if device.type == "cpu":
        return host
    return host.pin_memory().to(device, non_blocking=True)


def vertical_slash_scores_ref(
    q: torch.Tensor, k: torch.Tensor, seq_len: int, *, last_q: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop version of `vertical_slash_scores` (plain torch, for tests)."""
    import torch

    b, h, t, d = q.shape
    group = h // k.shape[1]
    n = min(last_q, seq_len)
    vertical = torch.zeros(b, h, t)
    slash = torch.zeros(b, h, t)
    for bi in range(b):
        for hi in range(h):
            for pos in range(seq_len - n, seq_len):
                s = q[bi, hi, pos].float() @ k[bi, hi // group, : pos + 1].float().T / math.sqrt(d)
                p = torch.softmax(s, -1)
                vertical[bi, hi, : pos + 1] += p
                slash[bi, hi, : pos + 1] += p.flip(0)
    return vertical, slash


def vertical_slash_indices(
    q: torch.Tensor,
    k: torch.Tensor,
    n_vertical: int,
    n_slash: int,
    *,
    seq_len: int | None = None,
    last_q: int = 64,
    sinks: int = 64,
    local: int = 64,
    kv_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top `n_vertical` columns and top `n_slash` diagonals per head, estimated from the last queries.

    The first `sinks` columns and the `local` nearest diagonals are always kept (they count
    towards the budgets). Returns `(vertical [B, H, NV], slash [B, H, NS])` int32.

    Example:
        >>> import torch
        >>> q, k = torch.randn(1, 2, 512, 64), torch.randn(1, 1, 512, 64)
        >>> v_idx, s_idx = vertical_slash_indices(q, k, 100, 200)
        >>> v_idx.shape, s_idx.shape
        (torch.Size([1, 2, 100]), torch.Size([1, 2, 200]))
    """
    import torch

    t = q.shape[2]
    seq_len = t if seq_len is None else seq_len
    vertical, slash = vertical_slash_scores(q, k, seq_len, last_q=last_q, kv_index=kv_index)
    vertical[..., : min(sinks, seq_len)] = float("inf")
    slash[..., : min(local, seq_len)] = float("inf")
    vertical[..., seq_len:] = float("-inf")
    slash[..., seq_len:] = float("-inf")
    nv, ns = min(n_vertical, seq_len), min(n_slash, seq_len)
    v_idx = vertical.topk(nv, -1, sorted=False).indices.to(torch.int32)
    s_idx = slash.topk(ns, -1, sorted=False).indices.to(torch.int32)
    return v_idx, s_idx


def a_shape_indices(
    b: int, h: int, sinks: int, window: int, *, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A-shape as vertical-slash indices: columns `0..sinks-1`, diagonals `0..window-1`."""
    import torch

    v_idx = torch.arange(sinks, dtype=torch.int32, device=device).expand(b, h, sinks)
    s_idx = torch.arange(window, dtype=torch.int32, device=device).expand(b, h, window)
    return v_idx.contiguous(), s_idx.contiguous()


def _pool(x: torch.Tensor, block: int) -> torch.Tensor:
    """Mean of each block of `block` rows (the last block may be short): `[B, H, cdiv(T, block), D]`.

    Reduces in float32 straight from `x` (no float or padded copy of a 1 GB query tensor).
    """
    import torch

    b, h, t, d = x.shape
    full = t // block
    out = torch.empty(b, h, -(-t // block), d, dtype=torch.float32, device=x.device)
    if full:
        torch.mean(
            x[:, :, : full * block].unflatten(2, (full, block)), 3, dtype=torch.float32,
            out=out[:, :, :full],
        )  # fmt: skip
    if t > full * block:
        torch.mean(x[:, :, full * block :], 2, dtype=torch.float32, out=out[:, :, full])
    return out


_BIAS_CACHE_ELEMENTS = 1 << 22
"""Biases up to 16 MiB (up to ~250K tokens) are kept between calls; larger ones are rebuilt."""


def _left_bias(
    row0: int, row1: int, width: int, ratio: int, force_first: bool, device: torch.device
) -> torch.Tensor:
    """`[row1 - row0, width]` float32 added to the block scores of query blocks `row0:row1`:
    0 left of each one's diagonal, else -inf.

    With `force_first`, key block 0 gets +inf wherever it is left of the diagonal, so a top-k
    always picks it. It depends on shapes only, so small ones are built once and shared by every
    layer (saving a handful of launches where the host bounds the index build); a 1M-token bias
    (512 MiB) is not worth holding on to.
    """
    if (row1 - row0) * width <= _BIAS_CACHE_ELEMENTS:
        return _cached_left_bias(row0, row1, width, ratio, force_first, device)
    return _build_left_bias(row0, row1, width, ratio, force_first, device)


def _build_left_bias(
    row0: int, row1: int, width: int, ratio: int, force_first: bool, device: torch.device
) -> torch.Tensor:
    import torch

    keys = torch.arange(width, device=device)[None, :]
    limits = (torch.arange(row0, row1, device=device) * ratio)[:, None]
    bias = torch.where(keys < limits, 0.0, float("-inf"))
    if force_first:
        bias[:, 0] = torch.where(limits[:, 0] > 0, float("inf"), float("-inf"))
    return bias


# Room for the eight bands of a long prompt, with and without the forced block, and then some.
_cached_left_bias = functools.lru_cache(maxsize=32)(_build_left_bias)


_BAND_ELEMENTS = 1 << 23
"""Score matrices of at least this many elements per head (from 256K tokens at blocks of 128
and 64) are scored in row bands (below). Shorter prompts are one band: on an H200 the bands
took 1.06x as long at 128K and 1.9x at 64K (`sparse_index_bands_h200.json`), where the extra
launches and smaller top-k calls outweigh the smaller matrix."""


def _bands(n_m: int, n_k: int, ratio: int, least: int) -> list[tuple[slice, int] | None]:
    """Query-block bands `(rows, width)`: each band's rows read no key block at or past `width`.

    Query block m reads key blocks left of `m * ratio` only, so the top eighth of a causal score
    matrix needs only an eighth of its columns. Eight equal row bands score and rank 56 % of the
    full matrix, with the same results (1M tokens: 58 instead of 93 ms on an H200). `width` is at
    least `least` (what a top-k needs) and at most `n_k`. `[None]`: one band, the whole matrix.
    """
    if n_m * n_k < _BAND_ELEMENTS:
        return [None]
    n = min(8, n_m)
    edges = [round(i * n_m / n) for i in range(n + 1)]
    return [
        (slice(a, b), min(n_k, max((b - 1) * ratio, least, 1)))
        for a, b in itertools.pairwise(edges)
        if b > a
    ]


def _block_scores(
    q_pool: torch.Tensor,
    k_pool: torch.Tensor,
    kv_index: torch.Tensor,
    ratio: int,
    force_first: bool,
    band: tuple[slice, int] | None,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Pooled block scores of a band of query blocks (None: all) against the key blocks it can
    read, a few heads at a time: `(heads, [B, h, rows, width] float32)` per chunk.

    Chunks bound the memory (at 1M tokens one head's scores take 512 MiB).
    """
    import torch

    if band is None:
        row0, row1, width = 0, q_pool.shape[2], k_pool.shape[2]
    else:  # views only where needed: short prompts are bound by host time
        row0, row1, width = band[0].start, band[0].stop, band[1]
        q_pool, k_pool = q_pool[:, :, row0:row1], k_pool[:, :, :width]
    bias = _left_bias(row0, row1, width, ratio, force_first, q_pool.device)
    h = q_pool.shape[1]
    for hs in _chunks(h, q_pool.shape[2] * k_pool.shape[2] * 4):
        part = torch.matmul(q_pool[:, hs], _kv_for(k_pool, hs, kv_index).transpose(-1, -2))
        yield hs, part.add_(bias)


def block_sparse_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    block_m: int = 128,
    block_n: int = 64,
    kv_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scores of mean-pooled query blocks against mean-pooled key blocks: `[B, H, NM, NK]` float32.

    Key blocks on or right of each query block's diagonal get -inf.
    """
    import torch

    q_pool, k_pool = _pool(q, block_m), _pool(k, block_n)
    kv = _kv_index(kv_index, q.shape[1], k)
    parts = _block_scores(q_pool, k_pool, kv, block_m // block_n, False, None)
    return torch.cat([part for _, part in parts], 1)


def block_sparse_scores_ref(
    q: torch.Tensor, k: torch.Tensor, *, block_m: int = 128, block_n: int = 64
) -> torch.Tensor:
    """Loop version of `block_sparse_scores` (plain torch, for tests)."""
    import torch

    b, h, t, _d = q.shape
    group = h // k.shape[1]
    n_m, n_k = -(-t // block_m), -(-t // block_n)
    out = torch.full((b, h, n_m, n_k), float("-inf"))
    for bi in range(b):
        for hi in range(h):
            for m in range(n_m):
                qm = q[bi, hi, m * block_m : (m + 1) * block_m].float().mean(0)
                for j in range(min(n_k, m * block_m // block_n)):
                    kj = k[bi, hi // group, j * block_n : (j + 1) * block_n].float().mean(0)
                    out[bi, hi, m, j] = qm @ kj
    return out


def block_sparse_indices(
    q: torch.Tensor,
    k: torch.Tensor,
    top_k: int,
    *,
    block_m: int = 128,
    block_n: int = 64,
    kv_index: torch.Tensor | None = None,
    ranked: bool = False,
) -> torch.Tensor:
    """Top key blocks per query block: `[B, H, NM, K]` int32, -1 pads last.

    Blocks come in no particular order, or best first with `ranked` (slower: a sort), which
    lets a caller cut per-head budgets from one top-k.

    `top_k` counts every key block a query block reads: its own `block_m / block_n` diagonal
    blocks (always computed) plus `top_k - block_m / block_n` chosen ones, the first forced.

    Example:
        >>> import torch
        >>> q, k = torch.randn(1, 2, 1024, 64), torch.randn(1, 1, 1024, 64)
        >>> block_sparse_indices(q, k, 4).shape
        torch.Size([1, 2, 8, 2])
    """
    import torch

    b, h, t, _d = q.shape
    ratio = block_m // block_n
    n_m, n_k = -(-t // block_m), -(-t // block_n)
    chosen = max(1, min(top_k - ratio, n_k))
    idx = torch.empty(b, h, n_m, chosen, dtype=torch.int32, device=q.device)
    q_pool, k_pool = _pool(q, block_m), _pool(k, block_n)
    kv = _kv_index(kv_index, h, k)
    for band in _bands(n_m, n_k, ratio, chosen):
        out = idx if band is None else idx[:, :, band[0]]
        for hs, scores in _block_scores(q_pool, k_pool, kv, ratio, True, band):
            if ranked:
                top = scores.topk(chosen, -1)
                out[:, hs] = torch.where(top.values > float("-inf"), top.indices, -1)
            else:
                # unsorted: the kernel does not care about order; sorting cost a tenth of top-k
                out[:, hs] = _top_positions(scores, chosen)
    if ranked:
        return idx
    use_all, every = _short_rows(n_m, n_k, ratio, chosen, q.device)
    return torch.where(use_all, every, idx)


_ROW_TOPK_MIN_ELEMENTS = 1 << 23
"""Smaller score sets (prompts up to 32K tokens at 32 heads) keep `torch.topk`: there the index
build is bound by host time, and the kernel's launch cost more than its faster top-k saved (on
an H200, 0.50 against 0.46 ms per build at 32K; `sparse_index_topk_h200_threshold_2e21.json`)."""


def _row_topk_kernel_for(scores: torch.Tensor) -> bool:
    """Whether `_top_positions` runs the `row_topk` kernel: on a GPU, for rows it can hold."""
    from ragline.kernels.row_topk import ROW_TOPK_MAX_WIDTH

    return (
        scores.is_cuda
        and scores.shape[-1] <= ROW_TOPK_MAX_WIDTH
        and scores.numel() >= _ROW_TOPK_MIN_ELEMENTS
    )


def _top_positions(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the `k` best scores along the last axis, in no particular order."""
    if _row_topk_kernel_for(scores):
        from ragline.kernels.row_topk import row_topk

        # one program per row instead of torch's four radix passes (1.3 ms at 128K on an H200)
        width = scores.shape[-1]
        return row_topk(scores.reshape(-1, width), k).view(*scores.shape[:-1], k)
    return scores.topk(k, -1, sorted=False).indices


@functools.lru_cache(maxsize=8)
def _short_rows(
    n_m: int, n_k: int, ratio: int, chosen: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query blocks with at most `chosen` key blocks left of the diagonal read all of them.

    Only there could a top-k return a -inf (invalid) block. Returns `(use_all [NM, 1] bool,
    every [NM, chosen] int32)`: the blocks `0..n_left-1`, then -1s.
    """
    import torch

    ramp = torch.arange(chosen, device=device, dtype=torch.int32)
    n_left = (torch.arange(n_m, device=device, dtype=torch.int32) * ratio).clamp(max=n_k)
    every = torch.where(ramp < n_left[:, None], ramp, -1)
    return (n_left <= chosen)[:, None], every
