"""Model resolution: packaged short names, the model cache, and cached loading."""

from ragline.models.catalog import KNOWN_MODELS, PackagedModel
from ragline.models.loader import LoadedLM, load_causal_lm, load_embedder
from ragline.models.store import ModelStatus, gguf_path, model_status, pull, resolve_packaged

__all__ = [
    "KNOWN_MODELS",
    "LoadedLM",
    "ModelStatus",
    "PackagedModel",
    "gguf_path",
    "load_causal_lm",
    "load_embedder",
    "model_status",
    "pull",
    "resolve_packaged",
]
