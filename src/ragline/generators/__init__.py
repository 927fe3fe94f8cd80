"""Prompt building and answer generation stages."""

from ragline.generators.hf import HFGenerator
from ragline.generators.prompt import NumberedPrompt, build_prompt

__all__ = ["HFGenerator", "NumberedPrompt", "build_prompt"]
