"""merge_states: kernel == reference; merging two halves of the keys equals attention over all."""

from __future__ import annotations

import pytest
import torch

from ragline.kernels import merge_states, merge_states_ref
from tests.kernels._util import assert_close


def _partial(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    s = q.float() @ k.float().transpose(-1, -2) / q.shape[-1] ** 0.5
    lse = torch.logsumexp(s, -1)
    return (torch.softmax(s, -1) @ v.float()).to(q.dtype), lse


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [64, 128, 256])
def test_merge_equals_full_attention(dtype: torch.dtype, d: int) -> None:
    g = torch.Generator().manual_seed(d)
    q, k, v = (torch.randn(2, 3, 63, d, generator=g).to(dtype) for _ in range(3))
    oa, la = _partial(q, k[:, :, :20], v[:, :, :20])
    ob, lb = _partial(q, k[:, :, 20:], v[:, :, 20:])
    la[0, 0, 5] = float("-inf")  # a row whose first part saw no keys
    oa[0, 0, 5] = 0
    out, lse = merge_states(oa, la, ob, lb)
    ref, ref_lse = merge_states_ref(oa, la, ob, lb)
    lens = torch.tensor([63, 63])
    assert_close(out, ref, lens, "merge_states")
    full, _ = _partial(q, k, v)
    full[0, 0, 5] = ob[0, 0, 5]
    assert_close(out, full, lens, "merge vs full")
    torch.testing.assert_close(lse, ref_lse)


def test_both_empty_rows_stay_zero() -> None:
    o = torch.randn(1, 1, 4, 64)
    lse = torch.full((1, 1, 4), float("-inf"))
    out, l_out = merge_states(o, lse, o, lse)
    assert (out == 0).all() and torch.isinf(l_out).all()
