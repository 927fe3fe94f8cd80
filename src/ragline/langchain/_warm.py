"""Warm a wrapped stage up once, however many threads call into the LangChain adapter."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["WarmOnce"]


class WarmOnce:
    """Calls a stage's optional `warm_up()` the first time only; thread-safe."""

    def __init__(self) -> None:
        self.done = False
        # Loading an index or a model twice from two threads would waste seconds and memory.
        self._lock = threading.Lock()

    def __call__(self, stage: Any) -> None:
        """Warm `stage` up unless this already did."""
        with self._lock:
            if not self.done:
                hook = getattr(stage, "warm_up", None)
                if hook is not None:
                    hook()
                self.done = True
