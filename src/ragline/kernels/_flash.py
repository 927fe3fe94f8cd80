"""Triton building blocks shared by the sparse flash-attention kernels (imported lazily).

`IEEE` runs the products in float32 on upcast operands, under the CPU interpreter only: its
bf16 `tl.dot` is wrong (seen with Triton 3.9), and bf16 x bf16 products are exact in float32, so
the result matches the tensor-core path up to summation order. On a GPU, float32 inputs take
TF32 tensor-core products (see `dot_in_float32`).

Each helper advances the online-softmax state `(acc [BLOCK_M, D] fp32, m_i [BLOCK_M], l_i
[BLOCK_M])` over some keys; `m_i` is in log2 units (`qk_scale` = softmax scale * log2 e, > 0).
Scores stay raw `q . k` until the exponent, where the scale and the row maximum enter as one
fused multiply-add: a separate scaling pass was one more instruction per score, and the loops
issue instructions about as fast as the tensor cores finish their products.

`RESCALE` says how the state follows a growing row maximum:
- 0: every step (the textbook online softmax);
- 1: lazily, only when some row's maximum grew by more than 2^8 (one block-wide reduction and
  branch per step instead of a multiply of the whole accumulator);
- 2: never: `m_i` stays a pinned reference and the exponentials are taken against it. Softmax is
  the same for any reference; the reference only has to keep `exp2(score - m_i)` in range.
  Callers pin the maximum of a query block's own causal block (each row's own key is in it, so
  no row's largest term falls below 1) and check with `_pinned_overflow` that no row's sum grew
  past 2^100 and the output stayed finite; otherwise they redo the block with `RESCALE = 0`.
  The step is then exponentials, sums and products: no row maximum, block-wide reduction,
  branch or rescale.
"""

import triton
import triton.language as tl


@triton.jit
def _fresh_state(BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr):
    """An empty online-softmax state: output sums, row maxima (finite, so `exp2` stays 0), sums."""
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    return acc, m_i, l_i


@triton.jit
def _softmax_update(acc, m_i, l_i, qk, v, qk_scale, IEEE: tl.constexpr, RESCALE: tl.constexpr):
    """Fold raw scores `qk` (-inf where masked) into the state; the scale is positive, so the
    row maximum of the scaled scores is the scaled maximum."""
    if RESCALE == 2:
        p = tl.math.exp2(qk * qk_scale - m_i[:, None])
        l_i = l_i + tl.sum(p, 1)
        m_new = m_i
    elif RESCALE == 1:
        m_blk = tl.max(qk, 1) * qk_scale
        # p <= 256 under the stale maximum stays exact enough in fp32 sums and bf16 products
        if tl.max(m_blk - m_i, 0) > 8.0:
            m_new = tl.maximum(m_i, m_blk)
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha
            acc = acc * alpha[:, None]
            m_i = m_new
        p = tl.math.exp2(qk * qk_scale - m_i[:, None])
        l_i = l_i + tl.sum(p, 1)
        m_new = m_i
    else:
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
    if IEEE:
        p32 = p.to(v.dtype).to(tl.float32)
        acc = tl.dot(
            p32, v.to(tl.float32), acc, input_precision="ieee"
        )  # [M, N] x [N, D] -> [M, D]
    else:
        acc = tl.dot(p.to(v.dtype), v, acc)  # [M, N] x [N, D] -> [M, D]
    return acc, m_new, l_i


@triton.jit
def _pinned_overflow(acc, l_i, o_m, seq_len):
    """Whether a pinned pass (`RESCALE = 2`) left some live row out of range: a term past 2^100
    (so a sum past it), or a non-finite sum or output. NaN fails every comparison, so it counts."""
    dead = o_m >= seq_len  # rows past the sequence: never stored, and their reference is -1e30
    row_ok = (l_i <= 1.2676506002282294e30) | dead
    acc_ok = (tl.abs(acc) <= 1.0e38) | dead[:, None]
    return tl.sum((~row_ok).to(tl.int32), 0) + tl.sum(tl.sum((~acc_ok).to(tl.int32), 1), 0) > 0


@triton.jit
def _scores(q, k, IEEE: tl.constexpr):
    """Raw scores `q . k`, unscaled (`_softmax_update` applies the scale)."""
    if IEEE:
        qk = tl.dot(
            q.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision="ieee"
        )  # [M, D] x [D, N] -> [M, N]
    else:
        qk = tl.dot(q, tl.trans(k))  # [M, D] x [D, N] -> [M, N]
    return qk


@triton.jit
def _attend_tile(acc, m_i, l_i, q, p_k0, p_v0, s_kt, s_vt, o_key, m_key, qk_scale,
                 HEAD_DIM: tl.constexpr, IEEE: tl.constexpr, RESCALE: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """Keys `o_key` (any width); with MASKED, keys where `m_key` is false score -inf.

    Masked keys are still loaded (callers point them at valid rows), so loads stay unmasked.
    """
    o_d = tl.arange(0, HEAD_DIM)
    b_k = tl.load(p_k0 + o_key[:, None] * s_kt + o_d[None, :])
    qk = _scores(q, b_k, IEEE)
    if MASKED:
        qk = tl.where(m_key[None, :], qk, float("-inf"))
    b_v = tl.load(p_v0 + o_key[:, None] * s_vt + o_d[None, :])
    return _softmax_update(acc, m_i, l_i, qk, b_v, qk_scale, IEEE, RESCALE)


@triton.jit
def _attend_range(
    acc,
    m_i,
    l_i,
    q,
    p_k0,
    p_v0,
    s_kt,
    s_vt,
    lo,
    hi,
    qk_scale,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    IEEE: tl.constexpr,
    WIDE: tl.constexpr,
    RESCALE: tl.constexpr,
):
    """Keys `[lo, hi)`, `hi - lo` a multiple of BLOCK_N, all visible to every row: no masks.

    With WIDE, steps of 2 * BLOCK_N keys while two blocks remain (half the per-step softmax
    bookkeeping), then at most one step of BLOCK_N. An empty range (`hi <= lo`) reads nothing.
    """
    # hi < lo happens when a prefix reaches past a run: empty it, so that the steps below never
    # depend on how integer division rounds a negative span
    hi = tl.maximum(hi, lo)
    if WIDE:
        o_w = tl.arange(0, 2 * BLOCK_N)
        mid = lo + (hi - lo) // (2 * BLOCK_N) * (2 * BLOCK_N)
        for start in range(lo, mid, 2 * BLOCK_N):
            acc, m_i, l_i = _attend_tile(
                acc, m_i, l_i, q, p_k0, p_v0, s_kt, s_vt, start + o_w, o_w, qk_scale,
                HEAD_DIM, IEEE, RESCALE, False,
            )  # fmt: skip
        lo = mid
    o_n = tl.arange(0, BLOCK_N)
    for start in range(lo, hi, BLOCK_N):
        acc, m_i, l_i = _attend_tile(
            acc, m_i, l_i, q, p_k0, p_v0, s_kt, s_vt, start + o_n, o_n, qk_scale,
            HEAD_DIM, IEEE, RESCALE, False,
        )  # fmt: skip
    return acc, m_i, l_i


@triton.jit
def _attend_blocks(
    acc,
    m_i,
    l_i,
    q,
    p_k0,
    p_v0,
    s_kt,
    s_vt,
    p_idx,
    count,
    qk_scale,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    IEEE: tl.constexpr,
    WIDE: tl.constexpr,
    RESCALE: tl.constexpr,
    AHEAD: tl.constexpr,
):
    """Key blocks `idx[0:count]` (units of BLOCK_N keys), all visible to every row.

    With WIDE, two listed blocks are gathered into one tile of 2 * BLOCK_N keys. The loop runs
    whole tiles unmasked; an odd count's last block is one masked tile after it (its second
    half reads block 0 in its place). Masking inside the loop, even behind a branch, cost
    about one instruction per score on every step.

    With AHEAD, the scores of the next tile are issued before this tile's softmax. On Hopper
    `tl.dot` is an asynchronous warpgroup MMA waited on at its result's first use, so written
    this way the next tile's Q K^T can run on the tensor cores while the exponentials of this
    one run (FlashAttention-3's intra-warpgroup overlap, by hand). It costs one wasted tile per
    call (the lookahead past the last block reads block 0, masked).
    """
    if AHEAD:
        PER: tl.constexpr = 2 if WIDE else 1  # listed blocks per tile
        o_w = tl.arange(0, PER * BLOCK_N)
        half = o_w // BLOCK_N
        within = o_w % BLOCK_N
        o_d = tl.arange(0, HEAD_DIM)
        m_key = half < count
        blk = tl.load(p_idx + half, mask=m_key, other=0)
        o_key = blk * BLOCK_N + within
        # Scores are scaled as they are made and the softmax gets a scale of 1: the hand-over
        # of the next tile's scores across the loop's back edge is then this multiply, where
        # raw scores were copied register by register on every step.
        qk = _scores(q, tl.load(p_k0 + o_key[:, None] * s_kt + o_d[None, :]), IEEE) * qk_scale
        whole = count // PER * PER
        for i in range(0, whole, PER):
            nxt = i + PER + half
            m_next = nxt < count
            blk_next = tl.load(p_idx + nxt, mask=m_next, other=0)
            o_next = blk_next * BLOCK_N + within
            k_next = tl.load(p_k0 + o_next[:, None] * s_kt + o_d[None, :])
            qk_next = _scores(q, k_next, IEEE) * qk_scale
            b_v = tl.load(p_v0 + o_key[:, None] * s_vt + o_d[None, :])
            acc, m_i, l_i = _softmax_update(acc, m_i, l_i, qk, b_v, 1.0, IEEE, RESCALE)
            qk, m_key, o_key = qk_next, m_next, o_next
        if whole < count:  # the lookahead already holds the scores of the odd last block
            qk = tl.where(m_key[None, :], qk, float("-inf"))
            b_v = tl.load(p_v0 + o_key[:, None] * s_vt + o_d[None, :])
            acc, m_i, l_i = _softmax_update(acc, m_i, l_i, qk, b_v, 1.0, IEEE, RESCALE)
    elif WIDE:
        o_w = tl.arange(0, 2 * BLOCK_N)
        half = o_w // BLOCK_N
        within = o_w % BLOCK_N
        whole = count // 2 * 2
        for i in range(0, whole, 2):
            blk = tl.load(p_idx + i + half)
            acc, m_i, l_i = _attend_tile(
                acc, m_i, l_i, q, p_k0, p_v0, s_kt, s_vt, blk * BLOCK_N + within, o_w,
                qk_scale, HEAD_DIM, IEEE, RESCALE, False,
            )  # fmt: skip
        if whole < count:
            m_key = whole + half < count
            blk = tl.load(p_idx + whole + half, mask=m_key, other=0)
            acc, m_i, l_i = _attend_tile(
                acc, m_i, l_i, q, p_k0, p_v0, s_kt, s_vt, blk * BLOCK_N + within, m_key,
                qk_scale, HEAD_DIM, IEEE, RESCALE, True,
            )  # fmt: skip
    else:
        o_n = tl.arange(0, BLOCK_N)
        for i in range(0, count):
            start = tl.load(p_idx + i) * BLOCK_N
            acc, m_i, l_i = _attend_tile(
                acc, m_i, l_i, q, p_k0, p_v0, s_kt, s_vt, start + o_n, o_n, qk_scale,
                HEAD_DIM, IEEE, RESCALE, False,
            )  # fmt: skip
    return acc, m_i, l_i


@triton.jit
def _attend_diagonal(
    acc,
    m_i,
    l_i,
    q,
    p_k0,
    p_v0,
    s_kt,
    s_vt,
    start_m,
    seq_len,
    qk_scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    IEEE: tl.constexpr,
    RESCALE: tl.constexpr,
):
    """Keys of the query block itself, causal and bounded by the sequence length."""
    o_m = start_m + tl.arange(0, BLOCK_M)
    o_n = tl.arange(0, BLOCK_N)
    o_d = tl.arange(0, HEAD_DIM)
    hi = tl.minimum(start_m + BLOCK_M, seq_len)
    for start in range(start_m, hi, BLOCK_N):
        o_key = start + o_n
        m_key = o_key < seq_len
        b_k = tl.load(p_k0 + o_key[:, None] * s_kt + o_d[None, :], mask=m_key[:, None], other=0.0)
        qk = _scores(q, b_k, IEEE)
        qk = tl.where((o_key[None, :] <= o_m[:, None]) & m_key[None, :], qk, float("-inf"))
        b_v = tl.load(p_v0 + o_key[:, None] * s_vt + o_d[None, :], mask=m_key[:, None], other=0.0)
        acc, m_i, l_i = _softmax_update(acc, m_i, l_i, qk, b_v, qk_scale, IEEE, RESCALE)
    return acc, m_i, l_i


@triton.jit
def _finish(acc, m_i, l_i, p_o, p_lse, o_m, seq_len, n_tokens, HEAD_DIM: tl.constexpr):
    """Normalise and store; rows at or past `seq_len` get zeros and lse -inf."""
    m_row = o_m < seq_len
    out = acc / l_i[:, None]
    out = tl.where(m_row[:, None], out, 0.0)
    lse = tl.where(m_row, (m_i + tl.math.log2(l_i)) * 0.6931471805599453, float("-inf"))
    m_store = o_m < n_tokens
    tl.store(p_o, out.to(p_o.dtype.element_ty), mask=m_store[:, None])
    tl.store(p_lse, lse, mask=m_store)
