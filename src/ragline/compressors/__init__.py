"""Prompt compressors: question-aware LongLLMLingua and question-agnostic LLMLingua."""

from ragline.compressors.longllmlingua import (
    LLMLinguaCompressor,
    LLMLinguaConfig,
    LongLLMLinguaCompressor,
    LongLLMLinguaConfig,
)
from ragline.compressors.recover import recover, recover_all

__all__ = [
    "LLMLinguaCompressor",
    "LLMLinguaConfig",
    "LongLLMLinguaCompressor",
    "LongLLMLinguaConfig",
    "recover",
    "recover_all",
]
