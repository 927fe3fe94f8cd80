"""Budget controller: how many tokens to keep, which documents to keep, and each one's keep ratio."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["apply_context_budget", "dynamic_ratios", "parse_context_budget", "select_documents"]

_BUDGET = re.compile(r"^\s*([+\-*])\s*(\d+(?:\.\d+)?)\s*$")


def parse_context_budget(expr: str) -> tuple[str, float]:
    """Parse a document-budget expression such as `+100`, `-50` or `*1.5` into `(op, value)`.

    The expression is data, never evaluated as code.

    Example:
        >>> parse_context_budget("*1.5")
        ('*', 1.5)
    """
    m = _BUDGET.match(expr)
    if m is None:
        raise ValueError(
            f"context_budget: expected '+N', '-N' or '*F' (e.g. '+100' or '*1.5'), got {expr!r}"
        )
    op, value = m.group(1), float(m.group(2))
    if op == "*" and value <= 0:
        raise ValueError(f"context_budget: a '*' factor must be above 0, got {expr!r}")
    return op, value


def apply_context_budget(target: float, expr: str) -> float:
    """The token budget for choosing documents: `target` adjusted by a `parse_context_budget` expression."""
    op, value = parse_context_budget(expr)
    if op == "+":
        return target + value
    if op == "-":
        return max(0.0, target - value)
    return target * value


def select_documents(
    ranked: Sequence[int], lengths: Sequence[int], budget: float, force: Sequence[int] = ()
) -> list[int]:
    """Take documents in rank order while their tokens fit `budget`; `force` indices are always kept.

    Forced documents are charged to the budget first. The document that crosses the budget is
    kept too: token-level compression then brings the total down to the target, so the budget
    is never left mostly unused because the next document is long.

    Args:
        ranked: document indices, most relevant first.
        lengths: tokens per document, indexed by document index.
        budget: tokens available.
        force: indices kept whatever the budget.

    Returns:
        The kept indices in rank order (forced ones where their rank puts them).
    """
    forced = set(force)
    used = float(sum(lengths[i] for i in forced))
    kept = set(forced)
    for i in ranked:
        if i in kept:
            continue
        if used >= budget:
            break
        kept.add(i)
        used += lengths[i]
    return [i for i in ranked if i in kept]


def dynamic_ratios(lengths: Sequence[int], target: float, spread: float) -> list[float]:
    """Per-document keep ratios that shift linearly with rank and together keep `target` tokens.

    Document k of n (rank order) gets `tau + spread * (1 - 2k/(n-1))`, so the best keeps the most;
    ratios are clamped to [0, 1] and `tau` is solved so the kept tokens sum to `target`.

    Args:
        lengths: tokens per selected document, in rank order.
        target: tokens to keep over all of them.
        spread: the `dynamic_ratio` (0 gives every document the same ratio).

    Example:
        >>> [round(r, 2) for r in dynamic_ratios([100, 100, 100], 150, 0.2)]
        [0.7, 0.5, 0.3]
    """
    n = len(lengths)
    if n == 0:
        return []
    total = float(sum(lengths))
    if total <= 0 or target >= total:
        return [1.0] * n
    if target <= 0:
        return [0.0] * n
    offsets = [spread * (1 - 2 * k / (n - 1)) if n > 1 else 0.0 for k in range(n)]

    def kept(tau: float) -> float:
        return sum(min(1.0, max(0.0, tau + o)) * ln for o, ln in zip(offsets, lengths, strict=True))

    lo, hi = -1.0 - spread, 1.0 + spread
    for _ in range(60):  # kept() is monotone in tau; bisection to well below a token
        mid = (lo + hi) / 2
        if kept(mid) < target:
            lo = mid
        else:
            hi = mid
    return [min(1.0, max(0.0, hi + o)) for o in offsets]
