"""A time budget per mutator call, well inside the webhook's timeout.

A mutator runs in the request's own thread (handing it to another thread costs ~40 µs a call).
A watchdog thread interrupts a call that overruns its budget by raising :class:`MutatorTimeout`
inside it (``PyThreadState_SetAsyncExc``), so the request is still answered in time, without that
mutator's changes. Python code is interrupted at once; a call blocked inside C (a socket read
without a timeout) is interrupted when it returns to Python, so plugins should still put timeouts
on their own I/O.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from typing import Dict, Optional

log = logging.getLogger(__name__)



def _set_async_exc(ident: int, exc) -> None:
    """Schedule ``exc`` in thread ``ident``; ``None`` (a NULL pointer) cancels a scheduled one."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), exc)


class MutatorTimeout(Exception):
    """Raised inside a mutator that overran its time budget."""


class Watchdog:
    def __init__(self, budget: float, tick: float = 0.02):
        self.budget = budget
        self.tick = tick
        self._lock = threading.Lock()
        self._running: Dict[int, list] = {}  # thread id -> [deadline, name, fired]
        self._thread: Optional[threading.Thread] = None

    def start(self, name: str) -> int:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._watch, name="mutator-watchdog", daemon=True)
                    self._thread.start()
        ident = threading.get_ident()
        self._running[ident] = [time.monotonic() + self.budget, name, False]
        return ident

    def finish(self, ident: int) -> bool:
        """End a call; True if it overran (any exception still in flight is cancelled)."""
        with self._lock:
            entry = self._running.pop(ident, None)
            if entry is not None and entry[2]:
                _set_async_exc(ident, None)  # cancel it if it has not been delivered yet
                return True
        return False

    def _watch(self) -> None:
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            with self._lock:
                for ident, entry in list(self._running.items()):
                    if not entry[2] and now > entry[0]:
                        entry[2] = True
                        log.warning("mutator %s overran its %.1fs budget; interrupting it", entry[1], self.budget)
                        _set_async_exc(ident, ctypes.py_object(MutatorTimeout))
