"""A deduplicating queue of keys for controllers, in the spirit of client-go's workqueue."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from typing import Callable, Iterable, List, Tuple

log = logging.getLogger(__name__)


class WorkQueue:
    """Keys waiting to be reconciled. A key added several times before it is handled is handled once.

    Store handlers ``add`` keys (cheap, from the watch thread); :meth:`run` hands them to
    ``reconcile`` one by one in the controller's thread until ``stop`` is set. A failing key is
    logged and passed to ``on_error``; it does not stop the others.
    """

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.clock = clock
        self._keys: set = set()
        self._later: List[Tuple[float, str]] = []  # (due, key), a heap
        self._cond = threading.Condition()

    def add(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        if keys:
            with self._cond:
                self._keys |= keys
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed (a decision that comes due later)."""
        with self._cond:
            heapq.heappush(self._later, (self.clock() + max(0.0, delay), key))
            self._cond.notify()

    def _take_due(self) -> float:
        """Move keys that came due into the set; return how long until the next one (at most 1 s)."""
        now = self.clock()
        while self._later and self._later[0][0] <= now:
            self._keys.add(heapq.heappop(self._later)[1])
        return min(1.0, self._later[0][0] - now) if self._later else 1.0

    def __len__(self) -> int:
        return len(self._keys)

    def run(self, stop: threading.Event, reconcile: Callable[[str], None],
            on_error: Callable[[str], None] = lambda key: None) -> None:
        while not stop.is_set():
            with self._cond:
                wait = self._take_due()
                if not self._keys:
                    self._cond.wait(timeout=wait)
                    self._take_due()
                batch, self._keys = self._keys, set()
            for key in sorted(batch):
                if stop.is_set():
                    return
                try:
                    reconcile(key)
                except Exception:
                    log.exception("%s: reconciling %s failed", self.name, key)
                    on_error(key)
