"""Triton kernel of `block_sparse`: one program per (query block, batch x head slot)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import triton
import triton.language as tl

from ragline.kernels._common import dot_in_float32
from ragline.kernels._flash import (
    _attend_blocks,
    _attend_diagonal,
    _finish,
    _fresh_state,
    _pinned_overflow,
)

if TYPE_CHECKING:
    import torch

    from ragline.kernels.block_sparse.plan import BlockSparsePlan

__all__ = ["_block_sparse_launch"]


# Sizes that vary with the plan are not specialised on (== 1, divisible by 16): each new value
# would otherwise compile another variant (seconds each), e.g. per calibration candidate.
@triton.jit(do_not_specialize=["n_tokens", "n_slots", "n_mblocks", "n_list", "group"])
def _block_sparse_kernel(
    Q,
    K,
    V,
    Out,
    LSE,
    seq_lens,
    heads,
    block_idx,
    block_count,
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
    n_mblocks,
    n_list,
    group,
    qk_scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    IEEE: tl.constexpr,
    WIDE: tl.constexpr,
    RESCALE: tl.constexpr,
    DIAG_N: tl.constexpr,
    AHEAD: tl.constexpr,
):
    i_m = tl.num_programs(0) - 1 - tl.program_id(0)
    i_bs = tl.program_id(1)
    i_b = i_bs // n_slots
    i_s = i_bs % n_slots
    i_h = tl.load(heads + i_s)
    i_hk = i_h // group
    seq_len = tl.load(seq_lens + i_b)
    start_m = i_m * BLOCK_M

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

    row = (i_b * n_slots + i_s) * n_mblocks + i_m
    count = tl.where(start_m < seq_len, tl.load(block_count + row), 0)
    p_idx = block_idx + row * n_list
    if RESCALE == 2:
        # own block first: its row maxima are the pinned references for the listed blocks
        acc, m_i, l_i = _attend_diagonal(
            acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, start_m, seq_len, qk_scale, BLOCK_M,
            DIAG_N, HEAD_DIM, IEEE, 0,
        )  # fmt: skip
        acc, m_i, l_i = _attend_blocks(
            acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, p_idx, count, qk_scale, BLOCK_N,
            HEAD_DIM, IEEE, WIDE, 2, AHEAD,
        )  # fmt: skip
        if _pinned_overflow(acc, l_i, o_m, seq_len):
            acc, m_i, l_i = _fresh_state(BLOCK_M, HEAD_DIM)
            acc, m_i, l_i = _attend_blocks(
                acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, p_idx, count, qk_scale, BLOCK_N,
                HEAD_DIM, IEEE, WIDE, 0, AHEAD,
            )  # fmt: skip
            acc, m_i, l_i = _attend_diagonal(
                acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, start_m, seq_len, qk_scale,
                BLOCK_M, DIAG_N, HEAD_DIM, IEEE, 0,
            )  # fmt: skip
    else:
        acc, m_i, l_i = _attend_blocks(
            acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, p_idx, count, qk_scale, BLOCK_N,
            HEAD_DIM, IEEE, WIDE, RESCALE, AHEAD,
        )  # fmt: skip
        acc, m_i, l_i = _attend_diagonal(
            acc, m_i, l_i, b_q, p_k0, p_v0, s_kt, s_vt, start_m, seq_len, qk_scale, BLOCK_M,
            DIAG_N, HEAD_DIM, IEEE, RESCALE,
        )  # fmt: skip
    p_o = Out + b64 * s_ob + h64 * s_oh + r64 * s_ot + o_d[None, :]
    p_lse = LSE + b64 * s_lb + h64 * s_lh + o_m
    _finish(acc, m_i, l_i, p_o, p_lse, o_m, seq_len, n_tokens, HEAD_DIM)


def _block_sparse_launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: BlockSparsePlan,
    out: torch.Tensor,
    lse: torch.Tensor,
    scale: float,
    num_warps: int,
    num_stages: int,
    wide: bool,
    rescale: int,
    ahead: bool,
) -> None:
    b, h, t, d = q.shape
    if t < (2 if wide else 1) * plan.block_n:
        # The lookahead loads a first tile even for an empty list: block 0's keys, one tile
        # wide, which a prompt shorter than a tile does not have.
        ahead = False
    if ahead and q.is_cuda:
        num_stages = min(num_stages, 2)  # the lookahead key tile takes the third stage's room
    n_slots = plan.heads.shape[0]
    grid = (triton.cdiv(t, plan.block_m), b * n_slots)
    _block_sparse_kernel[grid](
        q,
        k,
        v,
        out,
        lse,
        plan.seq_lens,
        plan.heads,
        plan.block_idx,
        plan.block_count,
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
        n_mblocks=plan.block_count.shape[-1],
        n_list=plan.block_idx.shape[-1],
        group=h // k.shape[1],
        qk_scale=scale * 1.4426950408889634,
        BLOCK_M=plan.block_m,
        BLOCK_N=plan.block_n,
        HEAD_DIM=d,
        IEEE=dot_in_float32(q),
        WIDE=wide,
        RESCALE=rescale,
        DIAG_N=min(plan.block_m, 2 * plan.block_n) if wide else plan.block_n,
        AHEAD=ahead,
        num_warps=num_warps,
        num_stages=num_stages,
    )
