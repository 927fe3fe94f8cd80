"""`reorder.sort`: order documents by retrieval score."""

from __future__ import annotations

import time

from ragline.pipeline.stage import ConfiguredStage, StageConfig
from ragline.types import RunState, StageTrace

__all__ = ["SortConfig", "SortReorderer"]


class SortConfig(StageConfig):
    """Parameters of `reorder.sort`."""

    descending: bool = True
    """Best first (true) or best last, nearest the question (false)."""


class SortReorderer(ConfiguredStage[SortConfig]):
    """Sort documents by score; unscored documents go last and ties keep their order.

    Example:
        >>> SortReorderer(descending=False).to_config()
        {'type': 'reorder.sort', 'descending': False}
    """

    type_name = "reorder.sort"
    Config = SortConfig

    def run(self, state: RunState) -> RunState:
        """Return the state with documents reordered."""
        started = time.perf_counter()
        scored = [d for d in state.documents if d.score is not None]
        unscored = [d for d in state.documents if d.score is None]
        scored.sort(key=lambda d: d.score, reverse=self.config.descending)  # type: ignore[arg-type,return-value]
        order = (*scored, *unscored)
        trace = StageTrace.since(self.name, started, order=[d.id for d in order])
        return state.evolve(documents=order, trace=trace)
