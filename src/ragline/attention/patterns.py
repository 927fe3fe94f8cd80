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

    from ragline.kernels.block_sparse.plan import BlockSparsePlan

__all__ = [
    "a_shape_indices",
    "block_sparse_indices",
    "block_sparse_plan",
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
    return torch.arange(h, device=k.device) // _group(h, k.shape[1])


def _group(h: int, h_kv: int) -> int:
    """Query heads per key head, for consecutive GQA groups (no `kv_index` given)."""
    if h_kv < 1 or h < h_kv or h % h_kv:
        raise ValueError(
            f"{h} query heads cannot share {h_kv} key heads in equal consecutive groups; pass "
            "kv_index naming the key head of each query head"
        )
    return h // h_kv


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
        kv = [x // _group(h, k.shape[1]) for x in range(h)]
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
    kv_index: torch.Tensor | None,
    band: tuple[slice, int] | None,
    bias: tuple[int, bool] | None,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Pooled block scores of a band of query blocks (None: all) against the key blocks it can
    read, a few heads at a time: `(heads, [B, h, rows, width] float32)` per chunk.

    `kv_index` names each query head's key head; None: consecutive GQA groups, which multiply
    their shared key head as one matrix of `group x rows` query rows instead of a gathered copy
    of it per query head. `bias` `(ratio, force_first)` adds `_left_bias` (-inf on and right of
    each diagonal); without it, entries there are left as computed. Chunks bound the memory (at
    1M tokens one head's scores take 512 MiB).
    """
    import torch

    b, h, n_m, d = q_pool.shape
    if band is None:
        row0, row1, width = 0, n_m, k_pool.shape[2]
    else:  # views only where needed: short prompts are bound by host time
        row0, row1, width = band[0].start, band[0].stop, band[1]
        q_pool, k_pool = q_pool[:, :, row0:row1], k_pool[:, :, :width]
    rows = row1 - row0
    add = None if bias is None else _left_bias(row0, row1, width, *bias, q_pool.device)
    group = 1 if kv_index is not None else _group(h, k_pool.shape[1])
    for ks in _chunks(h // group, group * rows * width * 4):
        hs = slice(ks.start * group, ks.stop * group)
        if kv_index is None:
            # [B, kv heads, group * rows, D]: a view of q_pool when no band slices its rows
            qg = q_pool[:, hs].reshape(b, ks.stop - ks.start, group * rows, d)
            part = torch.matmul(qg, k_pool[:, ks].transpose(-1, -2)).view(b, -1, rows, width)
        else:
            part = torch.matmul(q_pool[:, hs], _kv_for(k_pool, hs, kv_index).transpose(-1, -2))
        yield hs, part if add is None else part.add_(add)


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
    kv = None if kv_index is None else _kv_index(kv_index, q.shape[1], k)
    parts = _block_scores(q_pool, k_pool, kv, None, (block_m // block_n, False))
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

    Blocks come in no particular order (position order where the GPU top-k kernel picked
    them), or best first with `ranked` (slower: a sort), which lets a caller cut per-head budgets
    from one top-k.

    `top_k` counts every key block a query block reads: its own `block_m / block_n` diagonal
    blocks (always computed) plus `top_k - block_m / block_n` chosen ones, the first forced.

    Example:
        >>> import torch
        >>> q, k = torch.randn(1, 2, 1024, 64), torch.randn(1, 1, 1024, 64)
        >>> block_sparse_indices(q, k, 4).shape
        torch.Size([1, 2, 8, 2])
    """
    return _select_blocks(q, k, top_k, block_m, block_n, kv_index, ranked)[0]


def block_sparse_plan(
    q: torch.Tensor,
    k: torch.Tensor,
    top_k: int,
    seq_lens: torch.Tensor,
    *,
    heads: torch.Tensor | None = None,
    kv_index: torch.Tensor | None = None,
    budgets: torch.Tensor | None = None,
    block_m: int = 128,
    block_n: int = 64,
) -> BlockSparsePlan:
    """Indices and kernel plan of block-sparse heads in one step, with no host sync.

    Args:
        q: `[B, S, T, D]` queries of the block-sparse heads; k: `[B, H_kv, T, D]`.
        top_k: key blocks per query block, as in `block_sparse_indices`.
        seq_lens: `[B]` valid tokens per sequence.
        heads: `[S]` the layer's query head of each row of `q` (default `0..S-1`); only
            recorded in the plan.
        kv_index: `[S]` key head of each row of `q` (default: consecutive GQA groups over the
            rows of `q`, right when `q` holds all of a layer's heads in order; pass it when `q`
            holds a subset).
        budgets: `[S]` per-head `top_k`s, at most `top_k` (one ranked top-k is cut per head).
    """
    import torch

    from ragline.kernels.block_sparse.plan import plan_block_sparse

    idx, count = _select_blocks(q, k, top_k, block_m, block_n, kv_index, budgets is not None)
    if budgets is not None:
        # at least the forced first block, as `block_sparse_indices` (and calibration) keep it
        chosen = (budgets.to(q.device) - block_m // block_n).clamp(min=1)[:, None, None]
        idx = torch.where(torch.arange(idx.shape[-1], device=q.device) < chosen, idx, -1)
        count = None
    return plan_block_sparse(
        idx, seq_lens, q.shape[2], heads=heads, block_m=block_m, block_n=block_n,
        compact=True, block_count=count,
    )  # fmt: skip


def _select_blocks(
    q: torch.Tensor,
    k: torch.Tensor,
    top_k: int,
    block_m: int,
    block_n: int,
    kv_index: torch.Tensor | None,
    ranked: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`block_sparse_indices`, and each row's count of blocks (None with `ranked`).

    On a GPU each band of rows is one `row_topk` launch that reads the raw scores: it takes the
    blocks left of each query block's diagonal as candidates and block 0 first, so no causal
    bias, no pass for rows with fewer blocks than the budget, and no count pass follow it. At
    16K tokens that is 4 launches (two poolings, the product, the top-k) where layer and plan
    made 18, on a build bound by host time.
    """
    import torch

    b, h, t, _d = q.shape
    ratio = block_m // block_n
    n_m, n_k = -(-t // block_m), -(-t // block_n)
    chosen = max(1, min(top_k - ratio, n_k))
    q_pool, k_pool = _pool(q, block_m), _pool(k, block_n)
    kv = None if kv_index is None else _kv_index(kv_index, h, k)
    idx = torch.empty(b, h, n_m, chosen, dtype=torch.int32, device=q.device)
    count = torch.empty(b, h, n_m, dtype=torch.int32, device=q.device)
    for band in _bands(n_m, n_k, ratio, chosen):
        rows = slice(0, n_m) if band is None else band[0]
        width = n_k if band is None else band[1]
        kernel = not ranked and _row_topk_kernel_for(q, width)
        bias = None if kernel else (ratio, True)
        for hs, scores in _block_scores(q_pool, k_pool, kv, band, bias):
            if kernel:
                whole = band is None and hs.stop - hs.start == h  # the kernel's outputs are it
                part = (
                    count
                    if whole
                    else torch.empty(scores.shape[:3], dtype=torch.int32, device=q.device)
                )
                top = _kernel_top(scores, chosen, rows.start, ratio, part)
                if whole:
                    idx = top.view(b, h, n_m, chosen)
                else:
                    idx[:, hs, rows] = top.view(*scores.shape[:3], chosen)
                    count[:, hs, rows] = part
            elif ranked:
                best = scores.topk(chosen, -1)
                idx[:, hs, rows] = torch.where(best.values > float("-inf"), best.indices, -1)
            else:
                # unsorted: the kernel does not care about order; sorting cost a tenth of top-k
                top = scores.topk(chosen, -1, sorted=False).indices
                # only rows with at most `chosen` blocks left of the diagonal may pick a -inf one
                use_all, every = _short_rows(n_m, n_k, ratio, chosen, q.device)
                idx[:, hs, rows] = torch.where(use_all[rows], every[rows], top)
                valid = _valid_blocks(rows.start, rows.stop, n_k, ratio, q.device)
                count[:, hs, rows] = valid.clamp(max=chosen)
    return idx, None if ranked else count


def _row_topk_kernel_for(q: torch.Tensor, width: int) -> bool:
    """Whether a band of `width` key blocks takes the `row_topk` kernel: on a GPU, rows it holds."""
    from ragline.kernels.row_topk import ROW_TOPK_MAX_WIDTH

    return q.is_cuda and width <= ROW_TOPK_MAX_WIDTH


def _kernel_top(
    scores: torch.Tensor, chosen: int, row0: int, ratio: int, counts: torch.Tensor
) -> torch.Tensor:
    """`row_topk` of raw `[B, h, rows, width]` scores of query blocks `row0..`: `[B*h*rows, k]`,
    with each row's count written to `counts` (`[B, h, rows]`, contiguous)."""
    from ragline.kernels.row_topk import row_topk

    rows, width = scores.shape[2], scores.shape[3]
    valid = _valid_blocks(row0, row0 + rows, width, ratio, scores.device)
    flat = scores.view(-1, width)
    return row_topk(flat, chosen, valid=valid, keep_first=True, counts=counts.view(-1))


@functools.lru_cache(maxsize=64)
def _valid_blocks(
    row0: int, row1: int, width: int, ratio: int, device: torch.device
) -> torch.Tensor:
    """`[row1 - row0]` int32: how many of `width` key blocks lie left of each query block's diagonal."""
    import torch

    rows = torch.arange(row0, row1, device=device, dtype=torch.int32)
    return (rows * ratio).clamp(max=width)


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
    n_left = _valid_blocks(0, n_m, n_k, ratio, device)
    every = torch.where(ramp < n_left[:, None], ramp, -1)
    return (n_left <= chosen)[:, None], every
