"""block_sparse: kernel == reference on odd sizes; reference == SDPA with the expanded mask."""

from __future__ import annotations

import pytest
import torch

from ragline.errors import KernelUnavailable
from ragline.kernels import block_sparse, block_sparse_ref, plan_block_sparse
from ragline.kernels.block_sparse import block_sparse_mask
from tests.kernels._util import assert_close, qkv

CASES = [
    (1, 128, 2, 2, torch.float16, "random"),
    (63, 64, 4, 4, torch.bfloat16, "random"),
    (500, 128, 8, 1, torch.bfloat16, "random"),
    (500, 64, 4, 1, torch.float16, "empty"),
    (500, 64, 8, 2, torch.bfloat16, "full"),
    (301, 256, 4, 1, torch.bfloat16, "random"),  # Gemma 3's head dim and GQA
]


def _blocks(b: int, h: int, t: int, sparsity: str, seed: int) -> torch.Tensor:
    n_m, n_k = -(-t // 128), -(-t // 64)
    if sparsity == "empty":
        return torch.full((b, h, n_m, 1), -1)
    if sparsity == "full":
        return torch.arange(n_k).expand(b, h, n_m, n_k)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, n_k, (b, h, n_m, 3), generator=g)


@pytest.mark.parametrize(("t", "d", "h", "h_kv", "dtype", "sparsity"), CASES)
def test_kernel_matches_reference(
    t: int, d: int, h: int, h_kv: int, dtype: torch.dtype, sparsity: str
) -> None:
    b = 2
    q, k, v = qkv(b, h, h_kv, t, d, dtype, seed=t * 3 + d)
    seq_lens = torch.tensor([max(1, t - t // 4), t])
    plan = plan_block_sparse(_blocks(b, h, t, sparsity, seed=t), seq_lens, t)
    out = torch.full_like(q, float("nan"))
    out, lse = block_sparse(q, k, v, plan, out=out)
    ref, ref_lse = block_sparse_ref(q, k, v, plan)
    assert_close(out, ref, seq_lens, f"block_sparse T={t} D={d} H={h}/{h_kv} {sparsity}")
    assert_close(lse[..., None], ref_lse[..., None], seq_lens, "lse")


@pytest.mark.parametrize("sparsity", ["random", "full"])
def test_reference_equals_sdpa_with_mask(sparsity: str) -> None:
    t, h = 401, 2
    q, k, v = qkv(1, h, 1, t, 64, torch.float32, seed=11)
    plan = plan_block_sparse(_blocks(1, h, t, sparsity, seed=12), torch.tensor([t]), t)
    ref, _ = block_sparse_ref(q, k, v, plan)
    mask = torch.stack([block_sparse_mask(plan, 0, s) for s in range(h)])[None]
    kv, vv = k.expand(1, h, t, 64), v.expand(1, h, t, 64)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, kv, vv, attn_mask=mask)
    torch.testing.assert_close(ref, sdpa, atol=1e-5, rtol=1e-5)
    if sparsity == "full":
        dense = torch.nn.functional.scaled_dot_product_attention(q, kv, vv, is_causal=True)
        torch.testing.assert_close(ref, dense, atol=1e-5, rtol=1e-5)


def test_plan_drops_blocks_on_or_right_of_the_diagonal() -> None:
    idx = torch.tensor([[[[0, 1, 1, 5], [3, 2, 0, -1]]]])
    plan = plan_block_sparse(idx, torch.tensor([256]), 256)
    # query block 1 (keys 128..255) owns key blocks 2 and 3: only block 0 lies left of it
    assert plan.block_count.tolist() == [[[0, 1]]]
    assert plan.block_idx[0, 0, 1, 0].item() == 0


def test_compact_plan_from_the_index_builder_equals_checked_plan() -> None:
    from ragline.attention.patterns import block_sparse_indices

    q, k, v = qkv(1, 4, 2, 700, 64, torch.bfloat16, seed=21)
    idx = block_sparse_indices(q, k, 4)
    lens = torch.tensor([700])
    checked = plan_block_sparse(idx, lens, 700)
    compact = plan_block_sparse(idx, lens, 700, compact=True)
    assert torch.equal(checked.block_count, compact.block_count)
    for s in range(4):
        assert torch.equal(block_sparse_mask(checked, 0, s), block_sparse_mask(compact, 0, s))
    out_c, _ = block_sparse(q, k, v, compact)
    ref, _ = block_sparse_ref(q, k, v, checked)
    assert_close(out_c, ref, lens, "compact plan")


def test_block_count_needs_a_compact_plan_on_the_same_device() -> None:
    idx = torch.zeros(1, 2, 3, 4, dtype=torch.int32)
    with pytest.raises(KernelUnavailable, match="compact=True"):
        plan_block_sparse(idx, torch.tensor([300]), 300, block_count=torch.zeros(1, 2, 3))
    with pytest.raises(KernelUnavailable, match="block_count must be"):
        plan_block_sparse(
            idx, torch.tensor([300]), 300, compact=True, block_count=torch.zeros(1, 2, 2)
        )


@pytest.mark.parametrize(("t", "d", "ahead"), [(40, 128, False), (127, 128, False),
                                               (300, 128, True), (300, 64, False)])  # fmt: skip
def test_default_launch_and_no_lookahead_past_a_short_prompt(
    monkeypatch: pytest.MonkeyPatch, t: int, d: int, ahead: bool
) -> None:
    """The default at head dim 128 is lookahead + pinned maxima; below one 128-key tile the
    lookahead, which loads block 0's whole tile even for an empty list, is off (it read past
    the keys)."""
    import importlib

    # the package's `block_sparse` attribute is the op, so the module is looked up by name
    bs_triton = importlib.import_module("ragline.kernels.block_sparse.triton")

    seen: dict = {}

    class Recorder:
        def __getitem__(self, grid: object) -> object:
            return lambda *args, **kw: seen.update(kw)

    monkeypatch.setattr(bs_triton, "_block_sparse_kernel", Recorder())
    q, k, v = qkv(1, 2, 1, t, d, torch.bfloat16, seed=t)
    idx = torch.zeros(1, 2, -(-t // 128), 1, dtype=torch.int32)
    block_sparse(q, k, v, plan_block_sparse(idx, torch.tensor([t]), t))
    assert seen["AHEAD"] is ahead
    assert seen["RESCALE"] == (2 if d == 128 else 0)


def test_output_buffers_of_the_wrong_shape_or_layout_and_a_plan_for_another_length_are_refused() -> (
    None
):
    t = 300
    q, k, v = qkv(1, 2, 1, t, 64, torch.float32, seed=3)
    plan = plan_block_sparse(torch.zeros(1, 2, 3, 1, dtype=torch.int32), torch.tensor([t]), t)
    for bad in (torch.empty(1, 2, t, 32), torch.empty(1, 2, 64, t).transpose(2, 3)):
        with pytest.raises(KernelUnavailable, match="out must be"):
            block_sparse(q, k, v, plan, out=bad)
    for bad_lse in (torch.empty(1, 2, t - 1), torch.empty(1, t, 2).transpose(1, 2),
                    torch.empty(1, 2, t, dtype=torch.float64)):  # fmt: skip
        with pytest.raises(KernelUnavailable, match="lse must be float32"):
            block_sparse(q, k, v, plan, lse=bad_lse)
    short = plan_block_sparse(torch.zeros(1, 2, 2, 1, dtype=torch.int32), torch.tensor([200]), 200)
    with pytest.raises(KernelUnavailable, match="built for 200 tokens; q has 300"):
        block_sparse(q, k, v, short)
    # a transposed [B, T, H, D] buffer is fine: written in place, equal to a fresh output
    buf = torch.empty(1, t, 2, 64).transpose(1, 2)
    got, _ = block_sparse(q, k, v, plan, out=buf)
    assert got.data_ptr() == buf.data_ptr()
    want, _ = block_sparse(q, k, v, plan)
    torch.testing.assert_close(got, want)


def test_warp_specialized_kernel_refuses_what_it_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Gluon kernel runs on sm_90 at head dim 128 in bf16/fp16 with 128/64 blocks; anything
    else (the CPU, the interpreter, another GPU, shape, dtype or block) names why and takes the
    Triton kernel, which the default tuning then runs with its own fields."""
    from types import SimpleNamespace

    from ragline.kernels.block_sparse import block_sparse_warp_specialized_refusal as refusal

    q, k, _ = qkv(1, 2, 1, 300, 128, torch.bfloat16, seed=5)
    plan = plan_block_sparse(torch.zeros(1, 2, 3, 1, dtype=torch.int32), torch.tensor([300]), 300)
    assert "CUDA GPU only" in str(refusal(q, k, plan))

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cap = {"sm": (9, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: cap["sm"])

    def fake(t: int = 300, d: int = 128, dtype: torch.dtype = torch.bfloat16) -> SimpleNamespace:
        return SimpleNamespace(is_cuda=True, device="cuda:0", shape=(1, 2, t, d), dtype=dtype)

    assert refusal(fake(), fake(), plan) is None
    assert "head dim 128" in str(refusal(fake(d=64), fake(d=64), plan))
    assert "bf16/fp16" in str(refusal(fake(dtype=torch.float32), fake(), plan))
    assert "2^31" in str(refusal(fake(), fake(t=2**30), plan))
    assert "no keys" in str(refusal(fake(t=0), fake(t=0), plan))
    odd = SimpleNamespace(block_m=64, block_n=64)
    assert "got 64/64" in str(refusal(fake(), fake(), odd))
    cap["sm"] = (8, 0)
    assert "got sm_80" in str(refusal(fake(), fake(), plan))
    cap["sm"] = (10, 0)
    assert "got sm_100" in str(refusal(fake(), fake(), plan))
