"""A deduplicating queue of keys for controllers, in the spirit of client-go's workqueue."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable

log = logging.getLogger(__name__)


class WorkQueue:
    """Keys waiting to be reconciled. A key added several times before it is handled is handled once.

    Store handlers ``add`` keys (cheap, from the watch thread); :meth:`run` hands them to
    ``reconcile`` one by one in the controller's thread until ``stop`` is set. A failing key is
    logged and passed to ``on_error``; it does not stop the others.
    """

    def __init__(self, name: str):
        self.name = name
        self._keys: set = set()
        self._cond = threading.Condition()

    def add(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        if keys:
            with self._cond:
                self._keys |= keys
                self._cond.notify()

    def __len__(self) -> int:
        return len(self._keys)

    def run(self, stop: threading.Event, reconcile: Callable[[str], None],
            on_error: Callable[[str], None] = lambda key: None) -> None:
        while not stop.is_set():
            with self._cond:
                if not self._keys:
                    self._cond.wait(timeout=1.0)
                batch, self._keys = self._keys, set()
            for key in sorted(batch):
                if stop.is_set():
                    return
                try:
                    reconcile(key)
                except Exception:
                    log.exception("%s: reconciling %s failed", self.name, key)
                    on_error(key)
