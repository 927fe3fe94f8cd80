"""Sparse prefill attention: per-head patterns, online index builders and the transformers adapter.

Importing this package imports neither torch nor transformers; `ragline.attention.hf` does.
"""

__all__: list[str] = []
