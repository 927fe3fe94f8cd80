"""Every kernel launch variant (`KernelTuning`) gives the reference's result."""

from __future__ import annotations

import pytest
import torch

from ragline.kernels import (
    BLOCK_SPARSE_TUNING,
    KernelTuning,
    block_sparse,
    block_sparse_ref,
    plan_banded,
    plan_block_sparse,
    plan_vertical_slash,
    vertical_slash,
    vertical_slash_ref,
)
from tests.kernels._util import assert_close, qkv

VARIANTS = [
    pytest.param(KernelTuning(wide=False), id="narrow"),
    pytest.param(KernelTuning(wide=True, lazy=True), id="wide-lazy"),
    pytest.param(KernelTuning(wide=True, pinned=True), id="wide-pinned"),
    pytest.param(KernelTuning(wide=False, pinned=True), id="narrow-pinned"),
]


def _inputs(t: int, d: int, seed: int) -> tuple[torch.Tensor, ...]:
    q, k, v = qkv(2, 4, 2, t, d, torch.bfloat16, seed=seed)
    # Sharp logits (std ~4) make row maxima jump between tiles, so the lazy path rescales.
    return (q.float() * 4).to(q.dtype), k, v


BLOCK_SPARSE_VARIANTS = [
    *VARIANTS,
    pytest.param(KernelTuning(wide=True, ahead=True), id="wide-ahead"),
    pytest.param(KernelTuning(wide=False, ahead=True), id="narrow-ahead"),
    pytest.param(KernelTuning(wide=True, ahead=False), id="wide-in-order"),
    pytest.param(BLOCK_SPARSE_TUNING, id="default"),
    pytest.param(KernelTuning(wide=True, ahead=True, pinned=True), id="wide-ahead-pinned"),
]


@pytest.mark.parametrize("tuning", BLOCK_SPARSE_VARIANTS)
def test_block_sparse_variants(tuning: KernelTuning) -> None:
    t = 777
    q, k, v = _inputs(t, 64, seed=5)
    g = torch.Generator().manual_seed(6)
    # 7 candidates per row: after the plan drops repeats and blocks right of the diagonal the
    # counts are odd and even, so WIDE meets full pairs and a half-masked last pair.
    idx = torch.randint(-1, -(-t // 64), (2, 4, -(-t // 128), 7), generator=g)
    seq_lens = torch.tensor([t - 100, t])
    plan = plan_block_sparse(idx, seq_lens, t)
    out, lse = block_sparse(q, k, v, plan, tuning=tuning)
    ref, ref_lse = block_sparse_ref(q, k, v, plan)
    assert_close(out, ref, seq_lens, f"block_sparse {tuning}")
    assert_close(lse[..., None], ref_lse[..., None], seq_lens, "lse")


@pytest.mark.parametrize("op", ["block_sparse", "vertical_slash"])
def test_pinned_reference_overflow_redoes_the_block_with_rescaling(op: str) -> None:
    """Keys far above a query block's own (a sink ~280 log2 units higher) overflow the pinned pass;
    the block is redone with the usual rescaling and still equals the reference."""
    t = 400
    q, k, v = qkv(1, 2, 1, t, 64, torch.float32, seed=11)
    u = torch.nn.functional.normalize(
        torch.randn(64, generator=torch.Generator().manual_seed(3)), dim=0
    )
    q = q + 40 * u
    k[:, :, :64] += 40 * u  # block 0 only: later query blocks score it ~1600 / 8 nats above
    q, k, v = (x.to(torch.bfloat16) for x in (q, k, v))
    seq_lens = torch.tensor([t - 5])
    pinned = KernelTuning(pinned=True)
    if op == "block_sparse":
        plan = plan_block_sparse(torch.zeros(1, 2, -(-t // 128), 1, dtype=torch.long), seq_lens, t)
        out, lse = block_sparse(q, k, v, plan, tuning=pinned)
        ref, ref_lse = block_sparse_ref(q, k, v, plan)
    else:
        plan = plan_banded(64, 128, seq_lens, t, torch.arange(2))
        out, lse = vertical_slash(q, k, v, plan, tuning=pinned)
        ref, ref_lse = vertical_slash_ref(q, k, v, plan)
    assert torch.isfinite(out).all() and torch.isfinite(lse[..., : t - 5]).all()
    assert_close(out, ref, seq_lens, f"{op} pinned overflow")
    assert_close(lse[..., None], ref_lse[..., None], seq_lens, "lse")


@pytest.mark.parametrize("tuning", VARIANTS)
@pytest.mark.parametrize("shape", ["scattered", "a_shape"])
def test_vertical_slash_variants(tuning: KernelTuning, shape: str) -> None:
    t = 645
    q, k, v = _inputs(t, 128, seed=9)
    seq_lens = torch.tensor([t, t - 64])
    if shape == "a_shape":
        # Long contiguous runs: WIDE takes 128-key steps then a 64-key remainder.
        plan = plan_banded(64, 320, seq_lens, t, torch.arange(4))
    else:
        g = torch.Generator().manual_seed(10)
        vert = torch.randint(0, t, (2, 4, 11), generator=g)
        slash = torch.randint(0, t, (2, 4, 5), generator=g)
        plan = plan_vertical_slash(vert, slash, seq_lens, t)
    out, lse = vertical_slash(q, k, v, plan, tuning=tuning)
    ref, ref_lse = vertical_slash_ref(q, k, v, plan)
    assert_close(out, ref, seq_lens, f"vertical_slash {shape} {tuning}")
    assert_close(lse[..., None], ref_lse[..., None], seq_lens, "lse")


def test_key_layout_past_int32_offsets_is_refused() -> None:
    from ragline.errors import KernelUnavailable
    from ragline.kernels._common import check_qkv

    # meta tensors: a [B, T, H_kv, D] layout with 16 KV heads and 2M tokens, nothing allocated
    k = torch.empty(1, 2**21, 16, 64, dtype=torch.bfloat16, device="meta").transpose(1, 2)
    q = torch.empty(1, 16, 2**21, 64, dtype=torch.bfloat16, device="meta")
    with pytest.raises(KernelUnavailable, match="2\\^31"):
        check_qkv(q, k, k, torch.tensor([2**21]))


def test_kernel_refusal_names_what_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Head dims outside the kernels are refused; at 256 a GPU needs half-precision tiles and
    about 200 KB of shared memory per program (Hopper: 227 KB, A100: 164 KB)."""
    from types import SimpleNamespace

    from ragline.kernels._common import kernel_refusal

    assert kernel_refusal(96, torch.bfloat16) == "head dim must be one of (64, 128, 256); got 96"
    cuda = torch.device("cuda", 0)
    smem = {"kb": 227}
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device: SimpleNamespace(shared_memory_per_block_optin=smem["kb"] * 1024),
    )
    for d in (64, 128, 256):
        assert kernel_refusal(d, torch.bfloat16, cuda) is None
        assert kernel_refusal(d, torch.float32, torch.device("cpu")) is None
    why = kernel_refusal(256, torch.float32, cuda)
    assert why is not None and "shared memory" in why
    assert kernel_refusal(128, torch.float32, cuda) is None
    smem["kb"] = 164
    assert "this GPU offers 164 KB" in str(kernel_refusal(256, torch.bfloat16, cuda))
    assert kernel_refusal(128, torch.bfloat16, cuda) is None


@pytest.mark.parametrize("op", ["block_sparse", "vertical_slash"])
def test_head_dim_256_in_its_gpu_launch(op: str) -> None:
    """The launch a GPU takes at head dim 256 (64-key steps, two stages), under the interpreter."""
    t = 333
    q, k, v = _inputs(t, 256, seed=14)
    seq_lens = torch.tensor([t - 40, t])
    tuning = KernelTuning(wide=False, num_stages=2)
    if op == "block_sparse":
        g = torch.Generator().manual_seed(15)
        plan = plan_block_sparse(torch.randint(-1, 6, (2, 4, 3, 5), generator=g), seq_lens, t)
        out, _ = block_sparse(q, k, v, plan, tuning=tuning)
        ref, _ = block_sparse_ref(q, k, v, plan)
    else:
        plan = plan_banded(64, 100, seq_lens, t, torch.arange(4))
        out, _ = vertical_slash(q, k, v, plan, tuning=tuning)
        ref, _ = vertical_slash_ref(q, k, v, plan)
    assert_close(out, ref, seq_lens, f"{op} head dim 256 narrow")
