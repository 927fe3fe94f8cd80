"""Metadata filters (`where: {source_id: a.md}`) compiled to row ids through an inverted map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ragline.errors import UsageError
from ragline.types import Document

__all__ = ["matching_rows", "validate_where"]

_SCALARS = (str, int, float, bool)


def validate_where(where: Any) -> dict[str, Any]:
    """Check a filter: a mapping of metadata key to a scalar or a non-empty list of scalars."""
    if not isinstance(where, Mapping):
        raise UsageError(f"where: expected a mapping of metadata key to value(s), got {where!r}")
    for key, value in where.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, _SCALARS) for v in values):
            raise UsageError(
                f"where.{key}: expected a string, number, boolean or a non-empty list of them, got {value!r}"
            )
    return dict(where)


def _key(value: Any) -> tuple[bool, Any]:
    # True == 1 in Python; JSON metadata keeps them apart, and so does a filter.
    return (isinstance(value, bool), value)


def _inverted(documents: Sequence[Document], key: str) -> dict[Any, np.ndarray]:
    rows: dict[Any, list[int]] = {}
    for i, doc in enumerate(documents):
        value = doc.metadata.get(key)
        if isinstance(value, _SCALARS):
            rows.setdefault(_key(value), []).append(i)
    return {v: np.asarray(r, dtype=np.int64) for v, r in rows.items()}


def matching_rows(
    documents: Sequence[Document], where: Mapping[str, Any], cache: dict[str, dict[Any, np.ndarray]]
) -> np.ndarray:
    """Sorted row ids of documents matching every key of `where`; `cache` keeps one inverted map per key."""
    result: np.ndarray | None = None
    for key, value in validate_where(where).items():
        if key not in cache:
            cache[key] = _inverted(documents, key)
        values = value if isinstance(value, list) else [value]
        parts = [cache[key][_key(v)] for v in values if _key(v) in cache[key]]
        rows = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
        result = rows if result is None else np.intersect1d(result, rows, assume_unique=True)
    return result if result is not None else np.arange(len(documents), dtype=np.int64)
