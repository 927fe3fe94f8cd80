"""Load causal LMs and embedders by short name or path, once per process."""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ragline.errors import ModelNotFound
from ragline.models.catalog import KNOWN_MODELS
from ragline.models.store import check_tokenizer, resolve_packaged

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LoadedLM",
    "cache_kwarg",
    "cpu_has_native_bf16",
    "load_causal_lm",
    "load_embedder",
    "pick_device",
    "pick_dtype",
]

_LOCK = threading.Lock()
_LMS: dict[tuple[str, str, str], LoadedLM] = {}
_EMBEDDERS: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class LoadedLM:
    """A causal LM with its tokenizer, the name it was asked for and where it runs."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device


@cache
def _cache_kwarg_of(forward: Any) -> str:
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def cache_kwarg(model: Any) -> str:
    """The keyword a transformers model's `forward` takes its KV cache by, old name or new.

    transformers 5.2x renamed `past_key_values` to `cache` (the old name warns and goes in 5.40);
    older releases, such as the 5.17 on the lent GPU machines, know only the old one. A
    `torch.compile` wrapper is looked through to the module it compiled.
    """
    return _cache_kwarg_of(type(getattr(model, "_orig_mod", model)).forward)


def pick_device(device: str = "auto") -> str:
    """`auto` -> "cuda" when a CUDA device is present, else "cpu"; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX), as PyTorch detects it."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    # Private probes of torch.cpu; a torch without them is treated as lacking the feature.
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """`auto` -> bfloat16 on CUDA, float32 elsewhere (bf16 matmuls are slow on most CPUs)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in choices:
        raise ValueError(f"dtype: expected auto, float32, bfloat16 or float16, got {dtype!r}")
    return choices[dtype]


def _source(name: str, allow_pull: bool) -> tuple[str, dict[str, Any]]:
    if name in KNOWN_MODELS:
        return str(resolve_packaged(name, allow_pull=allow_pull)), {}
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFound(f"model {name!r}: no such GGUF file")
        return str(path.parent), {"gguf_file": path.name}
    return name, {}


def load_causal_lm(
    name: str, *, dtype: str = "auto", device: str = "auto", allow_pull: bool = True
) -> LoadedLM:
    """Load a causal LM once per (name, dtype, device) in this process.

    `name` is a packaged short name (`smollm2-135m-instruct`), a local directory, a `.gguf`
    file, or any name transformers accepts (a hub id, for users with a network).
    """
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    key = (name, str(torch_dtype), dev)
    with _LOCK:
        if key in _LMS:
            return _LMS[key]
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source, extra = _source(name, allow_pull)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **extra)
            if extra or name in KNOWN_MODELS:  # converted from a GGUF, now or when pulled
                check_tokenizer(tokenizer, name)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **extra)
        except (OSError, ValueError) as err:
            # transformers raises OSError for missing files and ValueError for folders without a model.
            raise ModelNotFound(f"cannot load causal LM {name!r}: {err}".splitlines()[0]) from err
        # transformers wraps `.to` with a signature mypy cannot follow.
        cast(Any, model).to(torch.device(dev)).eval()
        loaded = LoadedLM(name=name, model=model, tokenizer=tokenizer, device=torch.device(dev))
        _LMS[key] = loaded
        return loaded


def load_embedder(name: str = "minilm-l6", *, device: str = "auto") -> SentenceTransformer:
    """Load a sentence-transformers embedder once per (name, device); packaged names load offline."""
    dev = pick_device(device)
    with _LOCK:
        if (name, dev) in _EMBEDDERS:
            return _EMBEDDERS[(name, dev)]
        from sentence_transformers import SentenceTransformer

        source = str(resolve_packaged(name)) if name in KNOWN_MODELS else name
        try:
            model = SentenceTransformer(source, device=dev)
        except (OSError, ValueError) as err:
            raise ModelNotFound(f"cannot load embedder {name!r}: {err}".splitlines()[0]) from err
        _EMBEDDERS[(name, dev)] = model
        return model
