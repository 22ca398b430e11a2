"""A queue of keys for controllers, with the semantics of client-go's workqueue that they rely on."""

from __future__ import annotations

import collections
import heapq
import logging
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

log = logging.getLogger(__name__)

# A failed key is retried after RETRY_BASE seconds, doubling per failure in a row up to RETRY_MAX
# (client-go's default per-item rate limiter).
RETRY_BASE, RETRY_MAX = 0.005, 1000.0


def retry_delay(failures: int) -> float:
    """The back-off before the retry that follows the ``failures``-th failure in a row."""
    return min(RETRY_MAX, RETRY_BASE * 2 ** min(failures - 1, 64))


class WorkQueue:
    """Keys waiting to be reconciled.

    - A key added several times before it is handled is handled once; one added while it is
      being handled is handled again afterwards.
    - A key waits at most once: :meth:`add_after` for a key already waiting keeps the earlier due
      time, and :meth:`add` makes a waiting key ready now (its reconcile decides afresh).
    - A reconcile that raises is logged, passed to ``on_error`` and retried for that key after
      :func:`retry_delay`; a success forgets the key's failures. Other keys go on meanwhile.
    - With several workers, a key is never reconciled by two at once: one added while it is being
      handled waits for that reconcile to end.

    Store handlers ``add`` keys (cheap, from the watch thread); :meth:`run` hands them to
    ``reconcile`` in the controller's thread (and its workers' threads) until ``stop`` is set,
    in sorted order within each round of ready keys. With ``metrics``
    (the host's :class:`framework.metrics.Metrics`) the queue counts adds, retries and work
    duration, and shows its depth and longest running reconcile.
    """

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic, metrics=None):
        self.name = name
        self.clock = clock
        self._ready: set = set()
        self._due: Dict[str, float] = {}  # key -> when its one waiting entry comes due
        self._later: List[Tuple[float, str]] = []  # (due, key), a heap; entries not in _due are stale
        self._failures: Dict[str, int] = {}
        self._round: collections.deque = collections.deque()  # ready keys taken, sorted, not yet handed out
        self._running: Dict[str, float] = {}  # key -> when its reconcile started
        self._cond = threading.Condition()
        self._adds = self._retries = self._work_seconds = None
        if metrics is not None:
            self._adds = metrics.workqueue_adds.labels(name)
            self._retries = metrics.workqueue_retries.labels(name)
            self._work_seconds = metrics.workqueue_work_seconds.labels(name)
            metrics.workqueues.append(self)

    def add(self, keys: Iterable[str]) -> None:
        with self._cond:
            new = set(keys) - self._ready
            if not new:
                return
            self._ready.update(new)
            for key in new:
                self._due.pop(key, None)
            if self._adds is not None:
                self._adds.inc(len(new))
            self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed (a decision that comes due later), unless
        it is ready already or waiting for an earlier time."""
        with self._cond:
            due = self.clock() + max(0.0, delay)
            if key in self._ready or self._due.get(key, due + 1) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._later, (due, key))
            self._cond.notify()

    def _take_due(self) -> float:
        """Move keys that came due to the ready set; return how long until the next one (at most 1 s)."""
        now = self.clock()
        while self._later and self._later[0][0] <= now:
            due, key = heapq.heappop(self._later)
            if self._due.get(key) == due:
                del self._due[key]
                if key not in self._ready:
                    self._ready.add(key)
                    if self._adds is not None:
                        self._adds.inc()
        while self._later and self._due.get(self._later[0][1]) != self._later[0][0]:
            heapq.heappop(self._later)  # stale: its key became ready or was moved earlier
        return min(1.0, self._later[0][0] - now) if self._later else 1.0

    def __len__(self) -> int:
        """Keys ready to be handled (the queue's depth)."""
        return len(self._ready) + len(self._round)

    def has(self, key: str) -> bool:
        """``key`` is ready or waiting (its reconcile is scheduled)."""
        return key in self._ready or key in self._due

    def waiting(self) -> int:
        """Keys waiting for a later time."""
        return len(self._due)

    def failures(self, key: str) -> int:
        """Failures in a row of ``key``'s reconcile (0 after a success)."""
        return self._failures.get(key, 0)

    def longest_running(self) -> float:
        """Seconds the longest reconcile under way has been running (0 when none is)."""
        started = min(self._running.values(), default=None)
        return self.clock() - started if started is not None else 0.0

    def run(self, stop: threading.Event, reconcile: Callable[[str], None],
            on_error: Callable[[str], None] = lambda key: None, workers: int = 1) -> None:
        """Reconcile keys until ``stop`` is set: in this thread, and ``workers - 1`` more."""
        threads = [threading.Thread(target=self._work, args=(stop, reconcile, on_error), daemon=True,
                                    name=f"{self.name}-{i}") for i in range(1, workers)]
        for thread in threads:
            thread.start()
        try:
            self._work(stop, reconcile, on_error)
        finally:
            with self._cond:
                self._cond.notify_all()
            # A reconcile still in its call after 5 s ends on its own (the threads are daemons).
            deadline = time.monotonic() + 5.0
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self, stop: threading.Event, reconcile: Callable[[str], None],
              on_error: Callable[[str], None]) -> None:
        while not stop.is_set():
            with self._cond:
                key = self._next()
                if key is None:
                    self._cond.wait(timeout=self._take_due())
                    continue
                if self._round or self._ready:
                    self._cond.notify()  # more to do: wake another worker
            try:
                self._handle(key, reconcile, on_error)
            finally:
                with self._cond:
                    if key in self._ready:
                        self._cond.notify()  # added again while it ran: it may go now

    def _next(self) -> Optional[str]:
        """(Holding the lock) the next key to reconcile, claimed, or None. A round is the ready
        keys at the time, sorted; a key still being reconciled stays ready for a later round."""
        while True:
            if not self._round:
                self._take_due()
                taken = self._ready - self._running.keys()
                if not taken:
                    return None
                self._ready -= taken
                self._round.extend(sorted(taken))
            key = self._round.popleft()
            if key in self._running:
                self._ready.add(key)
                continue
            self._running[key] = self.clock()
            return key

    def _handle(self, key: str, reconcile: Callable[[str], None], on_error: Callable[[str], None]) -> None:
        started = self._running[key] = self.clock()
        try:
            reconcile(key)
        except Exception:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = retry_delay(failures)
            if failures == 1:
                log.exception("%s: reconciling %s failed; retrying in %.3gs", self.name, key, delay)
            else:
                log.warning("%s: reconciling %s failed %d times in a row; retrying in %.3gs",
                            self.name, key, failures, delay)
            if self._retries is not None:
                self._retries.inc()
            self.add_after(key, delay)
            on_error(key)
        else:
            self._failures.pop(key, None)
        finally:
            self._running.pop(key, None)
            if self._work_seconds is not None:
                self._work_seconds.observe(self.clock() - started)
