"""Triton kernel of `vertical_slash`: one program per (query block, batch x head slot)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import triton
import triton.language as tl

from ragline.kernels._common import dot_in_float32
from ragline.kernels._flash import (
    _attend_diagonal,
    _attend_range,
    _finish,
    _fresh_state,
    _pinned_overflow,
    _scores,
    _softmax_update,
)
from ragline.kernels.vertical_slash.plan import BandedPlan

if TYPE_CHECKING:
    import torch

    from ragline.kernels.vertical_slash.plan import VerticalSlashPlan

__all__ = ["_vertical_slash_launch"]


@triton.jit
def _attend_left(acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, qk_scale, live, slot, kb, start_m,
                 i_m, prefix, cover, run_lo, run_hi, run_count, columns, column_count, n_cover,
                 n_runs, n_columns, n_mblocks, band_sinks, band_e_max, BANDED: tl.constexpr,
                 BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, IEEE: tl.constexpr,
                 WIDE: tl.constexpr, RESCALE: tl.constexpr):  # fmt: skip
    """Every key of a query block left of its own block: the leading columns, the merged
    diagonal runs, then the gathered columns neither covered."""
    o_n = tl.arange(0, BLOCK_N)
    o_d = tl.arange(0, HEAD_DIM)
    # 1. the leading columns [0, prefix), a contiguous run of whole key blocks
    if BANDED:
        n_prefix = band_sinks // BLOCK_N * BLOCK_N
    else:
        n_prefix = tl.load(prefix + slot)
    hi = tl.where(live, tl.minimum(n_prefix, start_m), 0)
    acc, m_i, l_i = _attend_range(
        acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, 0, hi, qk_scale, BLOCK_N, HEAD_DIM, IEEE,
        WIDE, RESCALE,
    )  # fmt: skip

    # 2. merged diagonal runs: run r covers key blocks [kb - hi_r, kb - lo_r] of this query block
    if BANDED:
        # one run, block offsets 1..e_max: keys [(kb - e_max) * BLOCK_N, start_m) past the prefix
        lo = tl.maximum(n_prefix, (kb - band_e_max) * BLOCK_N)
        hi = tl.where(live, start_m, lo)  # e_max == 0 gives lo >= start_m: an empty range
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, lo, hi, qk_scale, BLOCK_N, HEAD_DIM, IEEE,
            WIDE, RESCALE,
        )  # fmt: skip
    else:
        n_run = tl.where(live, tl.load(run_count + slot), 0)
        for r in range(0, n_run):
            e_lo = tl.load(run_lo + slot * n_runs + r)
            e_hi = tl.load(run_hi + slot * n_runs + r)
            lo = tl.maximum(n_prefix, (kb - e_hi) * BLOCK_N)
            hi = (kb - e_lo + 1) * BLOCK_N
            acc, m_i, l_i = _attend_range(
                acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, lo, hi, qk_scale, BLOCK_N, HEAD_DIM,
                IEEE, WIDE, RESCALE,
            )  # fmt: skip

    # 3. gathered columns left of this block that neither the prefix nor a run covered
    if BANDED:
        n_col = tl.where(
            live, tl.minimum(tl.maximum(start_m - n_prefix, 0), band_sinks - n_prefix), 0
        )
    else:
        n_col = tl.where(live, tl.load(column_count + slot * n_mblocks + i_m), 0)
    for c0 in range(0, n_col, BLOCK_N):
        m_col = c0 + o_n < n_col
        if BANDED:
            o_col = n_prefix + c0 + o_n
            e_col = kb - o_col // BLOCK_N
            m_col = m_col & ((e_col < 1) | (e_col > band_e_max))
        else:
            o_col = tl.load(columns + slot * n_columns + c0 + o_n, mask=m_col, other=0)
            covered = tl.load(cover + slot * n_cover + kb - o_col // BLOCK_N, mask=m_col, other=1)
            m_col = m_col & (covered == 0)
        b_k = tl.load(p_k0 + o_col[:, None] * s_kt + o_d[None, :], mask=m_col[:, None], other=0.0)
        qk = _scores(b_q, b_k, IEEE)
        qk = tl.where(m_col[None, :], qk, float("-inf"))
        b_v = tl.load(p_v0 + o_col[:, None] * s_vt + o_d[None, :], mask=m_col[:, None], other=0.0)
        acc, m_i, l_i = _softmax_update(acc, m_i, l_i, qk, b_v, qk_scale, IEEE, RESCALE)

    return acc, m_i, l_i


# Sizes that vary with the plan are not specialised on (== 1, divisible by 16): each new value
# would otherwise compile another variant (seconds each), e.g. per calibration candidate.
@triton.jit(
    do_not_specialize=["n_tokens", "n_slots", "n_cover", "n_runs", "n_columns", "n_mblocks",
                       "group", "band_sinks", "band_e_max"]
)  # fmt: skip
def _vertical_slash_kernel(
    Q,
    K,
    V,
    Out,
    LSE,
    seq_lens,
    heads,
    prefix,
    cover,
    run_lo,
    run_hi,
    run_count,
    columns,
    column_count,
    s_qb,
    s_qh,
    s_qt,
    s_kb,
    s_kh,
    s_kt,
    s_vb,
    s_vh,
    s_vt,
    s_ob,
    s_oh,
    s_ot,
    s_lb,
    s_lh,
    n_tokens,
    n_slots,
    n_cover,
    n_runs,
    n_columns,
    n_mblocks,
    group,
    qk_scale,
    band_sinks,
    band_e_max,
    BANDED: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    IEEE: tl.constexpr,
    WIDE: tl.constexpr,
    RESCALE: tl.constexpr,
    DIAG_N: tl.constexpr,
):
    # Longest rows first: the last query blocks carry the most work.
    i_m = tl.num_programs(0) - 1 - tl.program_id(0)
    i_bs = tl.program_id(1)
    i_b = i_bs // n_slots
    i_s = i_bs % n_slots
    i_h = tl.load(heads + i_s)
    i_hk = i_h // group
    seq_len = tl.load(seq_lens + i_b)
    start_m = i_m * BLOCK_M
    live = start_m < seq_len

    o_m = start_m + tl.arange(0, BLOCK_M)
    o_d = tl.arange(0, HEAD_DIM)
    # int64 base and row offsets: at 1M tokens x 32 heads a head's offset passes 2^31
    b64, h64, hk64 = i_b.to(tl.int64), i_h.to(tl.int64), i_hk.to(tl.int64)
    r64 = o_m.to(tl.int64)[:, None]
    p_q = Q + b64 * s_qb + h64 * s_qh + r64 * s_qt + o_d[None, :]
    b_q = tl.load(p_q, mask=(o_m < n_tokens)[:, None], other=0.0)
    p_k0 = K + b64 * s_kb + hk64 * s_kh
    p_v0 = V + b64 * s_vb + hk64 * s_vh

    acc, m_i, l_i = _fresh_state(BLOCK_M, HEAD_DIM)

    slot = i_b * n_slots + i_s
    kb = start_m // BLOCK_N
    if RESCALE == 2:
        # own block first: its row maxima are the pinned references for every other key
        acc, m_i, l_i = _attend_diagonal(
            acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, start_m, seq_len, qk_scale, BLOCK_M,
            DIAG_N, HEAD_DIM, IEEE, 0,
        )  # fmt: skip
        acc, m_i, l_i = _attend_left(
            acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, qk_scale, live, slot, kb, start_m, i_m,
            prefix, cover, run_lo, run_hi, run_count, columns, column_count, n_cover, n_runs,
            n_columns, n_mblocks, band_sinks, band_e_max, BANDED, BLOCK_N, HEAD_DIM, IEEE,
            WIDE, 2,
        )  # fmt: skip
        if _pinned_overflow(acc, l_i, o_m, seq_len):
            acc, m_i, l_i = _fresh_state(BLOCK_M, HEAD_DIM)
            acc, m_i, l_i = _attend_left(
                acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, qk_scale, live, slot, kb, start_m,
                i_m, prefix, cover, run_lo, run_hi, run_count, columns, column_count, n_cover,
                n_runs, n_columns, n_mblocks, band_sinks, band_e_max, BANDED, BLOCK_N, HEAD_DIM,
                IEEE, WIDE, 0,
            )  # fmt: skip
            acc, m_i, l_i = _attend_diagonal(
                acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, start_m, seq_len, qk_scale,
                BLOCK_M, DIAG_N, HEAD_DIM, IEEE, 0,
            )  # fmt: skip
    else:
        acc, m_i, l_i = _attend_left(
            acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, qk_scale, live, slot, kb, start_m, i_m,
            prefix, cover, run_lo, run_hi, run_count, columns, column_count, n_cover, n_runs,
            n_columns, n_mblocks, band_sinks, band_e_max, BANDED, BLOCK_N, HEAD_DIM, IEEE,
            WIDE, RESCALE,
        )  # fmt: skip
        acc, m_i, l_i = _attend_diagonal(
            acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, start_m, seq_len, qk_scale, BLOCK_M,
            DIAG_N, HEAD_DIM, IEEE, RESCALE,
        )  # fmt: skip
    p_o = Out + b64 * s_ob + h64 * s_oh + r64 * s_ot + o_d[None, :]
    p_lse = LSE + b64 * s_lb + h64 * s_lh + o_m
    _finish(acc, m_i, l_i, p_o, p_lse, o_m, seq_len, n_tokens, HEAD_DIM)


def _vertical_slash_launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: VerticalSlashPlan | BandedPlan,
    out: torch.Tensor,
    lse: torch.Tensor,
    scale: float,
    num_warps: int,
    num_stages: int,
    wide: bool,
    rescale: int,
    ahead: bool,  # a block-sparse launch choice: the range loops here pipeline as written
) -> None:
    b, h, t, d = q.shape
    n_slots = plan.heads.shape[0]
    grid = (triton.cdiv(t, plan.block_m), b * n_slots)
    if isinstance(plan, BandedPlan):
        # no index tensors: any int32 tensor stands in for the pointers the kernel never reads
        index = (plan.seq_lens,) * 7
        sizes, band = (0, 0, 0, 0), (plan.sinks, plan.e_max)
    else:
        index = (plan.prefix, plan.cover, plan.run_lo, plan.run_hi, plan.run_count,
                 plan.columns, plan.column_count)  # fmt: skip
        sizes = (plan.cover.shape[-1], plan.run_lo.shape[-1], plan.columns.shape[-1],
                 plan.column_count.shape[-1])  # fmt: skip
        band = (0, 0)
    _vertical_slash_kernel[grid](
        q,
        k,
        v,
        out,
        lse,
        plan.seq_lens,
        plan.heads,
        *index,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        out.stride(0),
        out.stride(1),
        out.stride(2),
        lse.stride(0),
        lse.stride(1),
        n_tokens=t,
        n_slots=n_slots,
        n_cover=sizes[0],
        n_runs=sizes[1],
        n_columns=sizes[2],
        n_mblocks=sizes[3],
        group=h // k.shape[1],
        qk_scale=scale * 1.4426950408889634,
        band_sinks=band[0],
        band_e_max=band[1],
        BANDED=isinstance(plan, BandedPlan),
        BLOCK_M=plan.block_m,
        BLOCK_N=plan.block_n,
        HEAD_DIM=d,
        IEEE=dot_in_float32(q),
        WIDE=wide,
        RESCALE=rescale,
        DIAG_N=min(plan.block_m, 2 * plan.block_n) if wide else plan.block_n,
        num_warps=num_warps,
        num_stages=num_stages,
    )
