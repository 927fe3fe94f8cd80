"""Warp-specialised flash attention for Hopper in Gluon: a TMA loader warp, two consumer warpgroups.

Triton's kernels (`_flash.py`) run their two warpgroups in lock step: both wait at every tile
for the other, so the softmax of one never runs under the products of the other, and the
tensor cores sit idle half the time (Nsight Compute at 128K: tensor pipe 49 % busy against
cuDNN's 75 %, barrier stalls first). Triton 3.6 does not warp-specialise those loops on Hopper.
Gluon, Triton's explicit dialect, can: one program per (128-row query block, batch x head slot)
is split into
- a loader (one warp) that streams the diagonal block and then a list of 64-key blocks, two
  per 128-key tile, through TMA into a two-stage ring of key/value tiles, and
- two consumers (four warps each, rows 0-63 and 64-127 of the query block) that run the online
  softmax with asynchronous warpgroup MMAs and hand each tile back when done.
The consumers meet only at the ring's barriers, so one's exponentials overlap the other's MMAs.
An odd list repeats its last block in the second half of the last tile, which the consumers
mask. The block list is either a block-sparse plan's (`BANDED=False`) or, for a banded plan
(A-shape, first columns + nearest diagonals), derived from its two sizes: the whole sink blocks,
the run of block offsets `1..e_max`, and the leftover sink columns as one masked tile.
Head dim 128, bf16/fp16, sm_90 only; no CPU interpreter runs Gluon, so the CI tests the
refusals and the device tests the kernels against the references (`tests/gpu`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

if TYPE_CHECKING:
    import torch

__all__ = ["rows_view", "ws_flash_launch"]

# Triton 3.6 names the TMA load `async_copy_global_to_shared`; later versions `async_load`.
_tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared

LOG2E = 1.4426950408889634
BLOCK_M = 128  # query rows per program: two consumers of 64
STAGES = 2  # key/value ring depth: 32 KB of queries + 2 x 64 KB of tiles


@gluon.jit
def _block_row(i, block_idx, idx_base, n_pre, run_lo, BANDED: gl.constexpr, BN: gl.constexpr):
    """First key of the list's `i`-th 64-key block."""
    if BANDED:
        row = gl.where(i < n_pre, i * BN, run_lo + (i - n_pre) * BN)
    else:
        row = gl.load(block_idx + idx_base + i) * BN
    return row


@gluon.jit
def _loader(k_desc, v_desc, k_bufs, v_bufs, ready, empty, block_idx, idx_base, n_blocks, n_pre,
            run_lo, left_row, kv_row0, start_m, n_tiles, STAGES: gl.constexpr, BN: gl.constexpr,
            BANDED: gl.constexpr):  # fmt: skip
    nbytes: gl.constexpr = 4 * k_desc.block_type.nbytes
    n_pairs = (n_blocks + 1) // 2
    for t in range(n_tiles):
        s = t % STAGES
        # a fresh barrier counts as released: the first pass over the ring does not wait
        mbarrier.wait(empty.index(s), ((t // STAGES) & 1) ^ 1)
        r0 = start_m
        r1 = start_m + BN
        if t > n_pairs:  # a banded plan's leftover sink columns: one block, masked
            r0 = left_row
            r1 = left_row
        elif t > 0:
            j = 2 * (t - 1)
            r0 = _block_row(j, block_idx, idx_base, n_pre, run_lo, BANDED, BN)
            r1 = _block_row(gl.minimum(j + 1, n_blocks - 1), block_idx, idx_base, n_pre, run_lo,
                            BANDED, BN)  # fmt: skip
        bar = ready.index(s)
        mbarrier.expect(bar, nbytes)
        kb = k_bufs.index(s)
        vb = v_bufs.index(s)
        _tma_load(k_desc, [kv_row0 + r0, 0], bar, kb.slice(0, BN))
        _tma_load(k_desc, [kv_row0 + r1, 0], bar, kb.slice(BN, BN))
        _tma_load(v_desc, [kv_row0 + r0, 0], bar, vb.slice(0, BN))
        _tma_load(v_desc, [kv_row0 + r1, 0], bar, vb.slice(BN, BN))


@gluon.jit
def _tile(q, kb, vb, acc, m_i, l_i, rows, cols, start_m, qk_scale, n_valid,
          MASK: gl.constexpr, mma_layout: gl.constexpr, p_layout: gl.constexpr):  # fmt: skip
    zero = gl.zeros([64, 128], gl.float32, mma_layout)
    sc = warpgroup_mma(q, kb.permute((1, 0)), zero, use_acc=False, is_async=True)
    sc = warpgroup_mma_wait(num_outstanding=0, deps=(sc,))
    sc = sc * qk_scale
    if MASK == 1:  # the diagonal tile: causal
        sc = gl.where((start_m + cols)[None, :] <= rows[:, None], sc, -float("inf"))
    if MASK == 2:  # only the first n_valid keys: an odd list's last tile, leftover sinks
        sc = gl.where((cols < n_valid)[None, :], sc, -float("inf"))
    m_new = gl.maximum(m_i, gl.max(sc, 1))
    alpha = gl.exp2(m_i - m_new)
    p = gl.exp2(sc - m_new[:, None])
    l_i = l_i * alpha + gl.sum(p, 1)
    acc = acc * alpha[:, None]
    p_in = gl.convert_layout(p.to(vb.dtype), p_layout)
    acc = warpgroup_mma(p_in, vb, acc, is_async=True)
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    return acc, m_new, l_i


@gluon.jit
def _consumer(q_smem, k_bufs, v_bufs, ready, empty, zeroed, out_ptr, lse_ptr, o_base, lse_base,
              s_ot, start_m, seq_len, n_tokens, n_blocks, n_left, qk_scale, HALF: gl.constexpr,
              STAGES: gl.constexpr, BN: gl.constexpr):  # fmt: skip
    mma_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, 128, 16]
    )
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma_layout, k_width=2)
    row_l: gl.constexpr = gl.SliceLayout(1, mma_layout)
    col_l: gl.constexpr = gl.SliceLayout(0, mma_layout)
    q = q_smem.slice(HALF * 64, 64)
    rows = start_m + HALF * 64 + gl.arange(0, 64, layout=row_l)
    cols = gl.arange(0, 128, layout=col_l)
    m_i = gl.full([64], -1.0e30, gl.float32, row_l)
    l_i = gl.zeros([64], gl.float32, row_l)
    acc = gl.zeros([64, 128], gl.float32, mma_layout)

    mbarrier.wait(ready.index(0), 0)
    if start_m + 128 > seq_len:
        # The sequence ends inside its diagonal tile: its value rows past the end (padding,
        # or the next head's rows) may hold NaN, and 0 * NaN would reach live rows through
        # P @ V. Each consumer zeroes its half of the tile, then waits for the other's.
        zl: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
        vh = v_bufs.index(0).slice(HALF * 64, 64)
        r = start_m + HALF * 64 + gl.arange(0, 64, layout=gl.SliceLayout(1, zl))
        vals = vh.load(zl)
        vh.store(gl.where((r < seq_len)[:, None], vals, gl.zeros_like(vals)))
        fence_async_shared()
        mbarrier.arrive(zeroed, count=1)
        mbarrier.wait(zeroed, 0)
    acc, m_i, l_i = _tile(q, k_bufs.index(0), v_bufs.index(0), acc, m_i, l_i, rows, cols,
                          start_m, qk_scale, 128, 1, mma_layout, p_layout)  # fmt: skip
    mbarrier.arrive(empty.index(0), count=1)
    n_full = n_blocks // 2
    for t in range(1, n_full + 1):
        s = t % STAGES
        mbarrier.wait(ready.index(s), (t // STAGES) & 1)
        acc, m_i, l_i = _tile(q, k_bufs.index(s), v_bufs.index(s), acc, m_i, l_i, rows, cols,
                              start_m, qk_scale, 128, 0, mma_layout, p_layout)  # fmt: skip
        mbarrier.arrive(empty.index(s), count=1)
    t = n_full + 1
    if n_blocks % 2 == 1:
        s = t % STAGES
        mbarrier.wait(ready.index(s), (t // STAGES) & 1)
        acc, m_i, l_i = _tile(q, k_bufs.index(s), v_bufs.index(s), acc, m_i, l_i, rows, cols,
                              start_m, qk_scale, BN, 2, mma_layout, p_layout)  # fmt: skip
        mbarrier.arrive(empty.index(s), count=1)
        t += 1
    if n_left > 0:
        s = t % STAGES
        mbarrier.wait(ready.index(s), (t // STAGES) & 1)
        acc, m_i, l_i = _tile(q, k_bufs.index(s), v_bufs.index(s), acc, m_i, l_i, rows, cols,
                              start_m, qk_scale, n_left, 2, mma_layout, p_layout)  # fmt: skip
        mbarrier.arrive(empty.index(s), count=1)

    # every row sees at least its own key, so l_i > 0; rows past the sequence get 0 / -inf
    live = rows < seq_len
    out = gl.where(live[:, None], acc / l_i[:, None], 0.0)
    lse = gl.where(live, (m_i + gl.log2(l_i)) * 0.6931471805599453, -float("inf"))
    inside = rows < n_tokens
    r64 = rows.to(gl.int64)
    p_o = out_ptr + o_base + r64[:, None] * s_ot + cols[None, :]
    gl.store(p_o, out.to(out_ptr.dtype.element_ty), mask=inside[:, None])
    gl.store(lse_ptr + lse_base + r64, lse, mask=inside)


@gluon.jit(do_not_specialize=["n_tokens", "n_slots", "n_mblocks", "n_list", "group",
                              "band_sinks", "band_e_max"])  # fmt: skip
def _ws_flash_kernel(q_ptr, k_desc, v_desc, out_ptr, lse_ptr, seq_lens, heads, block_idx,
                     block_count, s_qb, s_qh, s_qt, s_ob, s_oh, s_ot, s_lb, s_lh, n_tokens,
                     n_slots, n_kv_heads, n_mblocks, n_list, group, qk_scale, band_sinks,
                     band_e_max, BANDED: gl.constexpr, STAGES: gl.constexpr,
                     num_warps: gl.constexpr):  # fmt: skip
    BN: gl.constexpr = 64
    # Longest rows first: the last query blocks carry the most work.
    i_m = gl.num_programs(0) - 1 - gl.program_id(0)
    i_bs = gl.program_id(1)
    i_b = i_bs // n_slots
    i_h = gl.load(heads + i_bs % n_slots)
    i_hk = i_h // group
    seq_len = gl.load(seq_lens + i_b)
    start_m = i_m * 128
    if start_m < seq_len:
        idx_base = (i_bs * n_mblocks + i_m).to(gl.int64) * n_list
        if BANDED:
            # the plan's prefix (whole sink blocks left of this block), then its one run of
            # block offsets 1..e_max past the prefix, then the leftover sinks unless the run
            # covers their block
            n_prefix = band_sinks // BN * BN
            n_pre = gl.minimum(n_prefix, start_m) // BN
            run_lo = gl.maximum(n_prefix, (i_m * 2 - band_e_max) * BN)
            n_blocks = n_pre + gl.maximum(start_m - run_lo, 0) // BN
            e_left = i_m * 2 - n_prefix // BN
            n_left = gl.minimum(gl.maximum(start_m - n_prefix, 0), band_sinks - n_prefix)
            n_left = gl.where((e_left >= 1) & (e_left <= band_e_max), 0, n_left)
        else:
            n_blocks = gl.load(block_count + i_bs * n_mblocks + i_m)
            n_pre = n_blocks
            run_lo = 0
            n_prefix = 0
            n_left = 0
        n_tiles = 1 + (n_blocks + 1) // 2 + (n_left > 0).to(gl.int32)
        dt: gl.constexpr = k_desc.dtype
        q_blk: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [num_warps, 1], [1, 0])
        o_r = start_m + gl.arange(0, 128, layout=gl.SliceLayout(1, q_blk))
        o_d = gl.arange(0, 128, layout=gl.SliceLayout(0, q_blk))
        b64 = i_b.to(gl.int64)
        h64 = i_h.to(gl.int64)
        p_q = q_ptr + b64 * s_qb + h64 * s_qh + o_r.to(gl.int64)[:, None] * s_qt + o_d[None, :]
        q = gl.load(p_q, mask=(o_r < n_tokens)[:, None], other=0.0)
        smem_l: gl.constexpr = gl.NVMMASharedLayout.get_default_for([128, 128], dt)
        q_smem = gl.allocate_shared_memory(dt, [128, 128], smem_l, q)
        k_bufs = gl.allocate_shared_memory(dt, [STAGES, 128, 128], smem_l)
        v_bufs = gl.allocate_shared_memory(dt, [STAGES, 128, 128], smem_l)
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        zeroed = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        for i in gl.static_range(STAGES):
            mbarrier.init(ready.index(i), count=1)
            mbarrier.init(empty.index(i), count=2)  # one arrival per consumer
        mbarrier.init(zeroed, count=2)
        fence_async_shared()

        kv_row0 = (i_b * n_kv_heads + i_hk) * n_tokens  # TMA coordinates are int32
        o_base = b64 * s_ob + h64 * s_oh
        lse_base = b64 * s_lb + h64 * s_lh
        gl.warp_specialize(
            [
                (_consumer, (q_smem, k_bufs, v_bufs, ready, empty, zeroed, out_ptr, lse_ptr,
                             o_base, lse_base, s_ot, start_m, seq_len, n_tokens, n_blocks,
                             n_left, qk_scale, 0, STAGES, BN)),
                (_consumer, (q_smem, k_bufs, v_bufs, ready, empty, zeroed, out_ptr, lse_ptr,
                             o_base, lse_base, s_ot, start_m, seq_len, n_tokens, n_blocks,
                             n_left, qk_scale, 1, STAGES, BN)),
                (_loader, (k_desc, v_desc, k_bufs, v_bufs, ready, empty, block_idx, idx_base,
                           n_blocks, n_pre, run_lo, n_prefix, kv_row0, start_m, n_tiles, STAGES,
                           BN, BANDED)),
            ],
            [4, 1],
            [232, 40],  # registers per thread: consumer 1, loader (consumer 0 gets the rest)
        )  # fmt: skip
    else:
        # a query block wholly past its sequence (right padding): zeros and lse -inf, as the
        # Triton kernels write
        blk: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [num_warps, 1], [1, 0])
        o_r = start_m + gl.arange(0, 128, layout=gl.SliceLayout(1, blk))
        o_d = gl.arange(0, 128, layout=gl.SliceLayout(0, blk))
        inside = o_r < n_tokens
        r64 = o_r.to(gl.int64)
        b64 = i_b.to(gl.int64)
        h64 = i_h.to(gl.int64)
        p_o = out_ptr + b64 * s_ob + h64 * s_oh + r64[:, None] * s_ot + o_d[None, :]
        zero = gl.zeros([128, 128], out_ptr.dtype.element_ty, blk)
        gl.store(p_o, zero, mask=inside[:, None])
        p_l = lse_ptr + b64 * s_lb + h64 * s_lh + r64
        lse_l: gl.constexpr = gl.SliceLayout(1, blk)
        gl.store(p_l, gl.full([128], -float("inf"), gl.float32, lse_l), mask=inside)


def rows_view(x: torch.Tensor) -> torch.Tensor:
    """`[B, H_kv, T, D]` as `[B*H_kv*T, D]` rows for a 2-D TMA descriptor (a copy if strided)."""
    if not x.is_contiguous() or x.data_ptr() % 16:
        # TMA needs one row stride and a 16-byte aligned base; HF's keys and values are
        # transposed views of [B, T, H_kv, D]. The copy costs ~1.5 % of the kernel at 128K.
        x = x.contiguous() if not x.is_contiguous() else x.clone()
    return x.view(-1, x.shape[-1])


def ws_flash_launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    scale: float,
    seq_lens: torch.Tensor,
    heads: torch.Tensor,
    *,
    block_idx: torch.Tensor | None = None,
    block_count: torch.Tensor | None = None,
    band: tuple[int, int] | None = None,
) -> None:
    """Launch on validated inputs: a block list (`block_idx`, `block_count`) or `band`.

    `band` is a banded plan's `(sinks, e_max)`."""
    import torch

    b, h, t, d = q.shape
    h_kv = k.shape[1]
    dtype = {torch.bfloat16: gl.bfloat16, torch.float16: gl.float16}[q.dtype]
    layout = gl.NVMMASharedLayout.get_default_for([64, d], dtype)
    k_desc = TensorDescriptor.from_tensor(rows_view(k), [64, d], layout)
    v_desc = TensorDescriptor.from_tensor(rows_view(v), [64, d], layout)
    n_slots = heads.shape[0]
    banded = band is not None
    if banded:
        block_idx = block_count = seq_lens  # unread: the list follows from the band's sizes
        n_mblocks = n_list = 1
    else:
        assert block_idx is not None and block_count is not None
        n_mblocks, n_list = block_count.shape[-1], block_idx.shape[-1]
    sinks, e_max = band if band is not None else (0, 0)
    grid = (triton.cdiv(t, BLOCK_M), b * n_slots)
    _ws_flash_kernel[grid](
        q, k_desc, v_desc, out, lse, seq_lens, heads, block_idx, block_count,
        q.stride(0), q.stride(1), q.stride(2), out.stride(0), out.stride(1), out.stride(2),
        lse.stride(0), lse.stride(1),
        t, n_slots, h_kv, n_mblocks, n_list, h // h_kv, scale * LOG2E, sinks, e_max,
        BANDED=banded, STAGES=STAGES, num_warps=4,
    )  # fmt: skip
