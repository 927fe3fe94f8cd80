"""The warp-specialised Hopper kernels equal their references (block-sparse, banded; on a GPU).

python -m pytest tests/gpu -q
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU without TRITON_INTERPRET (Gluon has no interpreter)",
                allow_module_level=True)  # fmt: skip

from ragline.kernels import (
    BLOCK_SPARSE_TUNING,
    VERTICAL_SLASH_TUNING,
    KernelTuning,
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


@pytest.fixture
def gluon_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Counts launches of the Gluon kernel, so a dispatch that silently took Triton fails."""
    import importlib

    calls: list[str] = []
    for op in ("block_sparse", "vertical_slash"):
        mod = importlib.import_module(f"ragline.kernels.{op}.gluon")
        real = mod.ws_flash_launch

        def counted(*args: object, _real: object = real, _op: str = op, **kw: object) -> None:
            calls.append(_op)
            _real(*args, **kw)  # type: ignore[operator]

        monkeypatch.setattr(mod, "ws_flash_launch", counted)
    yield calls


def _hopper_only() -> None:
    # tests/kernels/conftest.py turns the interpreter on for the whole process when collected
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET is on: run `python -m pytest tests/gpu` on its own")
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the warp-specialised kernels are sm_90 only")


def _inputs(
    b: int, h: int, h_kv: int, t: int, dtype: torch.dtype, seed: int, transposed: bool
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(b, n, t, 128, device="cuda", dtype=dtype, generator=g)
               for n in (h, h_kv, h_kv))  # fmt: skip
    if transposed:  # [B, T, H_kv, D] storage seen as [B, H_kv, T, D], as HF hands them over
        k, v = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (k, v))
    return q, k, v


def _lengths(b: int, t: int) -> list[int]:
    return [t] if b == 1 else [t, t - t // 3]


def _poison_padding(x: torch.Tensor, seq_lens: list[int]) -> torch.Tensor:
    """NaN in the keys/values past each length: never attended, so they must not show."""
    x = x.clone()
    for i, n in enumerate(seq_lens):
        x[i, :, n:] = float("nan")
    return x


def _run_and_check(
    op: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    ref_op: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    tuning: KernelTuning,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: object,
    seq_lens: list[int],
    heads: list[int],
    calls: list[str],
    name: str,
) -> None:
    """Kernel on NaN-poisoned padding vs reference on clean inputs; heads outside the plan keep
    the caller's NaN; rows past a length are 0 / -inf."""
    out = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:3], float("nan"), device="cuda")
    kp, vp = _poison_padding(k, seq_lens), _poison_padding(v, seq_lens)
    out, lse = op(q, kp, vp, plan, out=out, lse=lse, tuning=tuning)
    assert calls == [name], f"the Gluon kernel did not run ({calls})"
    ref, ref_lse = ref_op(q.float(), k.float(), v.float(), plan)
    others = [x for x in range(q.shape[1]) if x not in heads]
    assert torch.isnan(out[:, others]).all() and torch.isnan(lse[:, others]).all()
    for i, n in enumerate(seq_lens):
        o, r = out[i, heads, :n].float(), ref[i, heads, :n]
        assert not torch.isnan(o).any(), f"sequence {i}: NaN"
        err = (o - r).abs().max().item() / r.abs().max().item()
        assert err <= TOLERANCE[q.dtype], f"sequence {i}: relative max error {err:.2e}"
        torch.testing.assert_close(lse[i, heads, :n], ref_lse[i, heads, :n], atol=2e-3, rtol=1e-3)
        assert (out[i, heads, n:] == 0).all(), f"sequence {i}: rows past its length are not 0"
        assert (lse[i, heads, n:] == -float("inf")).all(), f"sequence {i}: lse past it not -inf"


@pytest.mark.parametrize(
    ("b", "h", "h_kv", "t", "dtype", "per_row", "transposed", "heads"),
    [
        (1, 4, 1, 1000, torch.bfloat16, 5, False, None),  # odd and even list counts
        (2, 8, 2, 4097, torch.float16, 9, False, None),  # two lengths (padding), GQA 4:1
        (1, 6, 6, 3001, torch.bfloat16, 64, True, None),  # no GQA; HF's transposed k/v
        (1, 2, 1, 129, torch.bfloat16, 1, False, None),  # one row past a block
        (2, 8, 2, 700, torch.bfloat16, 3, False, [1, 6]),  # a subset of the heads
        (1, 2, 1, 40, torch.bfloat16, 2, False, None),  # shorter than one key block
    ],
)
def test_gluon_kernel_matches_reference(
    gluon_calls: list[str], b: int, h: int, h_kv: int, t: int, dtype: torch.dtype, per_row: int,
    transposed: bool, heads: list[int] | None,
) -> None:  # fmt: skip
    _hopper_only()
    q, k, v = _inputs(b, h, h_kv, t, dtype, seed=t + per_row, transposed=transposed)
    seq_lens = _lengths(b, t)
    heads = heads or list(range(h))
    g = torch.Generator().manual_seed(t)
    idx = torch.randint(-1, -(-t // 64), (b, len(heads), -(-t // 128), per_row), generator=g)
    lens = torch.tensor(seq_lens, device="cuda")
    plan = plan_block_sparse(idx.cuda(), lens, t, heads=torch.tensor(heads, device="cuda"))
    assert block_sparse_warp_specialized_refusal(q, k, plan) is None
    _run_and_check(block_sparse, block_sparse_ref, BLOCK_SPARSE_TUNING, q, k, v, plan, seq_lens,
                   heads, gluon_calls, "block_sparse")  # fmt: skip


@pytest.mark.parametrize(
    ("b", "h", "h_kv", "t", "dtype", "sinks", "window", "transposed", "heads"),
    [
        (1, 4, 1, 1000, torch.bfloat16, 128, 300, False, None),  # A-shape, whole sink blocks
        (2, 8, 2, 4097, torch.float16, 100, 1000, False, None),  # leftover sinks, padding
        (1, 6, 6, 3001, torch.bfloat16, 1000, 600, True, None),  # banded VS shape, HF layout
        (1, 2, 1, 2500, torch.bfloat16, 70, 1, False, None),  # no run beyond the diagonal
        (1, 2, 2, 700, torch.bfloat16, 0, 5000, False, None),  # no sinks, window past T
        (2, 4, 1, 900, torch.bfloat16, 64, 200, False, [0, 3]),  # a subset of the heads
    ],
)
def test_gluon_kernel_matches_reference_on_banded_plans(
    gluon_calls: list[str], b: int, h: int, h_kv: int, t: int, dtype: torch.dtype, sinks: int,
    window: int, transposed: bool, heads: list[int] | None,
) -> None:  # fmt: skip
    _hopper_only()
    q, k, v = _inputs(b, h, h_kv, t, dtype, seed=t + sinks, transposed=transposed)
    seq_lens = _lengths(b, t)
    heads = heads or list(range(h))
    lens = torch.tensor(seq_lens, device="cuda")
    plan = plan_banded(sinks, window, lens, t, torch.tensor(heads, device="cuda"))
    assert vertical_slash_warp_specialized_refusal(q, k, plan) is None
    _run_and_check(vertical_slash, vertical_slash_ref, VERTICAL_SLASH_TUNING, q, k, v, plan,
                   seq_lens, heads, gluon_calls, "vertical_slash")  # fmt: skip
