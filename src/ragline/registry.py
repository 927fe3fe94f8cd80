"""One registry of stage types by dotted short name; third parties register via entry points."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from pydantic import BaseModel

from ragline.errors import ConfigError

__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownStageType",
    "load_stage_class",
    "register_stage",
    "stage_types",
]

ENTRY_POINT_GROUP = "ragline.stages"

# Built-ins are named, not imported, so `import ragline` stays free of torch and transformers.
_BUILTIN: dict[str, str] = {
    "retriever.bm25": "ragline.retrievers.bm25:BM25Retriever",
    "compressor.longllmlingua": "ragline.compressors.longllmlingua:LongLLMLinguaCompressor",
    "compressor.llmlingua": "ragline.compressors.longllmlingua:LLMLinguaCompressor",
    "retriever.dense": "ragline.retrievers.dense:DenseRetriever",
    "retriever.hybrid": "ragline.retrievers.hybrid:HybridRetriever",
    "retriever.langchain": "ragline.retrievers.langchain:LangChainRetriever",
    "rerank.cross_encoder": "ragline.retrievers.rerank:CrossEncoderReranker",
    "reorder.sort": "ragline.reorder.sort:SortReorderer",
    "prompt.numbered": "ragline.generators.prompt:NumberedPrompt",
    "generator.hf": "ragline.generators.hf:HFGenerator",
    "generator.openai": "ragline.generators.openai:OpenAIGenerator",
    "generator.langchain_chat": "ragline.langchain.chat:LangChainChatGenerator",
}
_REGISTERED: dict[str, type] = {}

T = TypeVar("T", bound=type)


class UnknownStageType(ConfigError):
    """No stage is registered under the given type name."""


def register_stage(type_name: str) -> Callable[[T], T]:
    """Class decorator registering a stage class under `type_name` for this process."""
    if "." not in type_name:
        raise ValueError(f"stage type names are dotted ('area.name'), got {type_name!r}")

    def deco(cls: T) -> T:
        _REGISTERED[type_name] = cls
        return cls

    return deco


def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def stage_types() -> list[str]:
    """Every known stage type: built-in, registered in this process, and from installed packages."""
    return sorted({*_BUILTIN, *_REGISTERED, *_entry_points()})


def _import(target: str) -> type:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ConfigError(f"{target!r} is not a class")
    return obj


def build_stage(cls: type, params: Mapping[str, Any]) -> Any:
    """Construct a stage from its class: through its typed `Config`, else `from_config`, else keywords.

    Raises pydantic's ValidationError for bad parameters, so callers can locate them.
    """
    config_cls = getattr(cls, "Config", None)
    if isinstance(config_cls, type) and issubclass(config_cls, BaseModel):
        return cls(config_cls(**params))
    build = getattr(cls, "from_config", None)
    return build(dict(params)) if build is not None else cls(**params)


def close_matches(word: str, candidates: list[str]) -> list[str]:
    """Candidates similar to `word`: the best match and any nearly as good (for "did you mean")."""
    ratios = sorted(
        ((difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates), reverse=True
    )
    if not ratios or ratios[0][0] < 0.6:
        return []
    return [c for r, c in ratios[:3] if r >= ratios[0][0] - 0.1]


def load_stage_class(type_name: str, *, allow_imports: bool = False) -> type:
    """Resolve a stage type to its class.

    `type_name` is a registered short name; with `allow_imports=True` it may also be an import
    path `package.module:Class` (never the default: YAML is data, not code).
    """
    if type_name in _REGISTERED:
        return _REGISTERED[type_name]
    if type_name in _BUILTIN:
        return _import(_BUILTIN[type_name])
    eps = _entry_points()
    if type_name in eps:
        return eps[type_name].load()  # type: ignore[attr-defined]
    if ":" in type_name:
        if not allow_imports:
            raise UnknownStageType(
                f"unknown stage type {type_name!r}: import paths are only allowed with allow_imports=True"
            )
        try:
            return _import(type_name)
        except (ImportError, AttributeError) as err:
            raise UnknownStageType(f"cannot import stage class {type_name!r}: {err}") from None
    known = stage_types()
    close = close_matches(type_name, known)
    hint = (
        f"did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else f"known types: {', '.join(known)}"
    )
    raise UnknownStageType(f"unknown stage type {type_name!r}; {hint}")
