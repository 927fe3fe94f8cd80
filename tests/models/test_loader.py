"""Loading causal LMs and embedders once per process; dtype and device choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ragline.errors import ModelNotFound
from ragline.models.loader import load_causal_lm, load_embedder, pick_device, pick_dtype


@pytest.fixture(scope="module")
def tiny_llama(tiny_lm_dir: Path) -> str:
    """The directory of the session's tiny Llama checkpoint, as a model name."""
    return str(tiny_lm_dir)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model hub for this test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_auto_device_is_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    assert pick_device("auto") == "cpu"


def test_auto_device_is_cuda_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    assert pick_device("auto") == "cuda"


@pytest.mark.parametrize("device", ["cpu", "cuda:1", "mps"])
def test_explicit_device_passes_through(device: str) -> None:
    assert pick_device(device) == device


@pytest.mark.parametrize(
    ("dtype", "device", "expected"),
    [
        ("auto", "cpu", torch.float32),
        ("auto", "cuda", torch.bfloat16),
        ("auto", "cuda:0", torch.bfloat16),
        ("float16", "cpu", torch.float16),
        ("bfloat16", "cpu", torch.bfloat16),
        ("float32", "cuda", torch.float32),
    ],
)
def test_pick_dtype(dtype: str, device: str, expected: torch.dtype) -> None:
    assert pick_dtype(dtype, device) is expected


@pytest.mark.parametrize("dtype", ["int8", "bool", "fp32", "Tensor", "complex64", ""])
def test_bad_dtype_is_a_value_error_naming_it(dtype: str) -> None:
    with pytest.raises(ValueError, match="expected auto, float32, bfloat16 or float16") as err:
        pick_dtype(dtype, "cpu")
    assert repr(dtype) in str(err.value)


def test_causal_lm_is_loaded_once(tiny_llama: str) -> None:
    first = load_causal_lm(tiny_llama, device="cpu")
    second = load_causal_lm(tiny_llama, device="cpu")

    assert second is first
    assert first.name == tiny_llama
    assert first.device == torch.device("cpu")


def test_loaded_lm_is_in_eval_mode_with_the_resolved_dtype(tiny_llama: str) -> None:
    lm = load_causal_lm(tiny_llama, dtype="auto", device="cpu")

    assert not lm.model.training
    assert next(lm.model.parameters()).dtype == torch.float32
    assert lm.model.config.num_hidden_layers == 2


def test_loaded_tokenizer_round_trips_text(tiny_llama: str) -> None:
    lm = load_causal_lm(tiny_llama, device="cpu")

    ids = lm.tokenizer("The Brassmoor Lighthouse, 1871.")["input_ids"]
    assert lm.tokenizer.decode(ids) == "The Brassmoor Lighthouse, 1871."
    assert lm.tokenizer.eos_token == "<|im_end|>"


def test_loaded_lm_produces_logits_over_its_vocabulary(tiny_llama: str) -> None:
    lm = load_causal_lm(tiny_llama, device="cpu")
    ids = lm.tokenizer("the dog sat", return_tensors="pt")["input_ids"]

    with torch.no_grad():
        logits = lm.model(ids).logits

    assert logits.shape == (1, ids.shape[1], len(lm.tokenizer))
    assert torch.isfinite(logits).all()


def test_same_resolved_dtype_shares_one_load(tiny_llama: str) -> None:
    auto = load_causal_lm(tiny_llama, dtype="auto", device="cpu")

    assert load_causal_lm(tiny_llama, dtype="float32", device="cpu") is auto


def test_other_dtype_is_a_separate_load(tiny_llama: str) -> None:
    fp32 = load_causal_lm(tiny_llama, dtype="float32", device="cpu")
    bf16 = load_causal_lm(tiny_llama, dtype="bfloat16", device="cpu")

    assert bf16 is not fp32
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert next(fp32.model.parameters()).dtype == torch.float32


def test_bad_dtype_fails_before_loading(tiny_llama: str) -> None:
    with pytest.raises(ValueError, match="'int8'"):
        load_causal_lm(tiny_llama, dtype="int8", device="cpu")


@pytest.mark.usefixtures("offline")
def test_missing_local_path_is_model_not_found(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "such" / "model")

    with pytest.raises(ModelNotFound, match="cannot load causal LM") as err:
        load_causal_lm(missing, device="cpu")
    assert missing in str(err.value)


@pytest.mark.usefixtures("offline")
def test_missing_gguf_file_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no such GGUF file"):
        load_causal_lm(str(tmp_path / "absent.Q4_0.gguf"), device="cpu")


def test_unpulled_packaged_lm_without_pull_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGLINE_CACHE", str(tmp_path / "cache"))
    # Earlier model tests (the compressors') leave SmolLM2 in the per-process cache, which
    # would answer before the empty model cache is ever consulted.
    monkeypatch.setattr("ragline.models.loader._LMS", {})

    with pytest.raises(ModelNotFound, match="ragline models pull smollm2-135m-instruct"):
        load_causal_lm("smollm2-135m-instruct", device="cpu", allow_pull=False)


@pytest.mark.usefixtures("offline")
def test_existing_directory_without_a_model_is_model_not_found(tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()

    with pytest.raises(ModelNotFound):
        load_causal_lm(str(empty), device="cpu")


@pytest.mark.model
@pytest.mark.usefixtures("offline")
def test_packaged_embedder_puts_paraphrases_closer_than_unrelated_text() -> None:
    embedder = load_embedder("minilm-l6", device="cpu")
    assert load_embedder("minilm-l6", device="cpu") is embedder

    vectors = embedder.encode(
        [
            "The cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "Interest rates rose after the central bank meeting.",
        ],
        convert_to_tensor=True,
    )

    assert vectors.shape == (3, 384)
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(3), atol=1e-5)
    similar, unrelated = float(unit[0] @ unit[1]), float(unit[0] @ unit[2])
    assert similar > unrelated + 0.3


def test_cache_kwarg_follows_the_forward_signature() -> None:
    """The KV cache keyword is whichever the model's forward takes: `cache` (new) or the old one."""
    from ragline.models.loader import cache_kwarg

    class New:
        def forward(self, input_ids: object = None, cache: object = None) -> None: ...

    class Old:
        def forward(self, input_ids: object = None, past_key_values: object = None) -> None: ...

    assert cache_kwarg(New()) == "cache"
    assert cache_kwarg(Old()) == "past_key_values"


def test_converted_models_get_their_tokenizer_checked(
    tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packaged (GGUF-converted) models have their tokenizer checked; a plain folder does not."""
    from ragline.models import loader

    seen: list[str] = []
    monkeypatch.setattr(loader, "_LMS", {})
    monkeypatch.setattr(loader, "check_tokenizer", lambda tok, source: seen.append(source))
    monkeypatch.setattr(loader, "resolve_packaged", lambda name, allow_pull: Path(tiny_llama))
    load_causal_lm(tiny_llama)
    assert seen == []
    load_causal_lm("smollm2-135m-instruct")
    assert seen == ["smollm2-135m-instruct"]
