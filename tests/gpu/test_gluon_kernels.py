"""The warp-specialised Hopper kernels equal their references (block-sparse, banded; on a GPU).

python -m pytest tests/gpu -q
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU without TRITON_INTERPRET (Gluon has no interpreter)",
                allow_module_level=True)  # fmt: skip

from ragline.kernels import (
    BLOCK_SPARSE_TUNING,
    VERTICAL_SLASH_TUNING,
    block_sparse,
    block_sparse_ref,
    block_sparse_warp_specialized_refusal,
    plan_banded,
    plan_block_sparse,
    vertical_slash,
    vertical_slash_ref,
    vertical_slash_warp_specialized_refusal,
)

TOLERANCE = {torch.bfloat16: 2e-2, torch.float16: 4e-3}


def _inputs(b: int, h: int, h_kv: int, t: int, dtype: torch.dtype, seed: int) -> tuple:
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(b, n, t, 128, device="cuda", dtype=dtype, generator=g)
               for n in (h, h_kv, h_kv))  # fmt: skip
    return q, k, v


def _random_plan(b: int, h: int, t: int, per_row: int, seq_lens: list[int], seed: int) -> object:
    g = torch.Generator().manual_seed(seed)
    n_m, n_k = -(-t // 128), -(-t // 64)
    idx = torch.randint(-1, n_k, (b, h, n_m, per_row), generator=g)
    return plan_block_sparse(idx.cuda(), torch.tensor(seq_lens, device="cuda"), t)


@pytest.mark.parametrize(
    ("b", "h", "h_kv", "t", "dtype", "per_row", "transposed"),
    [
        (1, 4, 1, 1000, torch.bfloat16, 5, False),  # odd lengths: odd and even list counts
        (2, 8, 2, 4097, torch.float16, 9, False),  # batch of two lengths, GQA 4:1
        (1, 6, 6, 3001, torch.bfloat16, 64, True),  # no GQA; HF's transposed k/v views
        (1, 2, 1, 129, torch.bfloat16, 1, False),  # one row past a block
    ],
)
def test_gluon_kernel_matches_reference(
    b: int, h: int, h_kv: int, t: int, dtype: torch.dtype, per_row: int, transposed: bool
) -> None:
    _hopper_only()
    q, k, v = _inputs(b, h, h_kv, t, dtype, seed=t + per_row)
    if transposed:  # [B, T, H_kv, D] storage seen as [B, H_kv, T, D], as HF hands them over
        k, v = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (k, v))
    seq_lens = [t] if b == 1 else [t, t - t // 3]
    plan = _random_plan(b, h, t, per_row, seq_lens, seed=t)
    assert block_sparse_warp_specialized_refusal(q, k, plan) is None
    out = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:3], float("nan"), device="cuda")
    out, lse = block_sparse(q, k, v, plan, out=out, lse=lse, tuning=BLOCK_SPARSE_TUNING)
    ref, ref_lse = block_sparse_ref(q.float(), k.float(), v.float(), plan)
    _assert_matches(out, lse, ref, ref_lse, seq_lens, dtype)


@pytest.mark.parametrize(
    ("b", "h", "h_kv", "t", "dtype", "sinks", "window", "transposed"),
    [
        (1, 4, 1, 1000, torch.bfloat16, 128, 300, False),  # A-shape, whole sink blocks
        (2, 8, 2, 4097, torch.float16, 100, 1000, False),  # leftover sinks, two lengths
        (1, 6, 6, 3001, torch.bfloat16, 1000, 600, True),  # banded VS shape, HF layout
        (1, 2, 1, 2500, torch.bfloat16, 70, 1, False),  # no run beyond the diagonal block
        (1, 2, 2, 700, torch.bfloat16, 0, 5000, False),  # no sinks, window past T (dense)
    ],
)
def test_gluon_kernel_matches_reference_on_banded_plans(
    b: int, h: int, h_kv: int, t: int, dtype: torch.dtype, sinks: int, window: int,
    transposed: bool,
) -> None:  # fmt: skip
    _hopper_only()
    q, k, v = _inputs(b, h, h_kv, t, dtype, seed=t + sinks)
    if transposed:
        k, v = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (k, v))
    seq_lens = [t] if b == 1 else [t, t - t // 3]
    lens = torch.tensor(seq_lens, device="cuda")
    plan = plan_banded(sinks, window, lens, t, torch.arange(h, device="cuda"))
    assert vertical_slash_warp_specialized_refusal(q, k, plan) is None
    out = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:3], float("nan"), device="cuda")
    out, lse = vertical_slash(q, k, v, plan, out=out, lse=lse, tuning=VERTICAL_SLASH_TUNING)
    ref, ref_lse = vertical_slash_ref(q.float(), k.float(), v.float(), plan)
    _assert_matches(out, lse, ref, ref_lse, seq_lens, dtype)


def _hopper_only() -> None:
    # tests/kernels/conftest.py turns the interpreter on for the whole process when collected
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET is on: run `python -m pytest tests/gpu` on its own")
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the warp-specialised kernels are sm_90 only")


def _assert_matches(
    out: torch.Tensor,
    lse: torch.Tensor,
    ref: torch.Tensor,
    ref_lse: torch.Tensor,
    seq_lens: list[int],
    dtype: torch.dtype,
) -> None:
    for i, n in enumerate(seq_lens):
        o, r = out[i, :, :n].float(), ref[i, :, :n]
        assert not torch.isnan(o).any(), f"sequence {i}: NaN"
        err = (o - r).abs().max().item() / r.abs().max().item()
        assert err <= TOLERANCE[dtype], f"sequence {i}: relative max error {err:.2e}"
        torch.testing.assert_close(lse[i, :, :n], ref_lse[i, :, :n], atol=2e-3, rtol=1e-3)
        # rows past the sequence (right padding), whole query blocks included: 0 and -inf
        assert (out[i, :, n:] == 0).all(), f"sequence {i}: rows past its length are not 0"
        assert (lse[i, :, n:] == -float("inf")).all(), f"sequence {i}: lse past it is not -inf"
