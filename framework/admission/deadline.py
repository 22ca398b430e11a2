"""One deadline per admission request, over all of its mutators together.

The API server waits ``timeoutSeconds`` for the webhook (5 in deploy/); past it, with failurePolicy
Ignore, the whole answer is lost: every plugin's change, a deny list's included. So each request
gets one deadline, shorter than that, and is answered by then with the work of the mutators that
finished in time.

Nothing is ever forced into a running thread: an exception raised inside a thread from outside can
land while it holds a lock (the logging module's, a cache's), which then stays held for ever.
Instead, a mutator runs on a :class:`Runner` thread while the request's own thread waits for it,
at most until the deadline. A late mutator is left to finish on its own; what it does after the
deadline is never used. Mutators declared ``inline`` skip the hand-off (~30 µs) and run in the
request's thread: they promise to wait for nothing longer than ``request.time_left()``.

Within the deadline each mutator has a budget of its own (``Mutator.budget_seconds``). One that
overruns it is abandoned the same way: left to finish on its thread with the request it was given,
while the mutators after it go on from another thread, with a copy of the state before it.
"""

from __future__ import annotations

import _thread
import logging
import queue
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Runner:
    """Threads that run the mutators of requests, started as needed and kept for the next ones.

    A mutator that never returns keeps its thread; new threads are started for new requests up to
    ``max_threads``, after which requests queue and, at their deadline, are answered without the
    mutators that could not start.
    """

    def __init__(self, max_threads: int = 64):
        self.max_threads = max_threads
        self._jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job and not yet promised one
        self._warned = False

    def run(self, job: Callable[[], None], timeout: float) -> bool:
        """Run ``job`` on a runner thread; True if it finished within ``timeout`` seconds."""
        return self.start(job).acquire(timeout=max(timeout, 0.0))

    def start(self, job: Callable[[], None]):
        """Hand ``job`` to a runner thread; the lock returned is released once it has finished."""
        done = _thread.allocate_lock()
        done.acquire()
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif self._threads < self.max_threads:
                self._threads += 1
                threading.Thread(target=self._work, name=f"admission-runner-{self._threads}", daemon=True).start()
            elif not self._warned:
                self._warned = True
                log.warning("all %d admission runner threads are busy (mutators that do not return?); "
                            "requests wait for one", self.max_threads)
        self._jobs.put((job, done))
        return done

    @property
    def threads(self) -> int:
        return self._threads

    def _work(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                job()
            except BaseException:  # the pipeline catches a mutator's errors: this is a host bug
                log.exception("admission runner job failed")
            finally:
                done.release()
            with self._lock:
                self._idle += 1
