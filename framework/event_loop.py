"""Admissions answered on the event-loop thread, and the one rule that makes it safe: never wait there.

Handing a request from waitress's event loop to a worker thread and its answer back costs about
half of the server's own CPU time per request (measured with ``python -m bench.server``). When
every mutator is declared ``nonblocking`` (it reads the request and the caches, nothing else),
``POST /mutate`` is answered on the event-loop thread itself. A nonblocking mutator that finds it
must wait after all (a cache miss that needs a GET, a PATCH) calls :func:`leave_event_loop`
first; the host's :class:`~framework.KubeClient` does so on every request it sends. On the event
loop that raises :class:`LeaveEventLoop`: the attempt is dropped (nothing has been answered,
mutators are idempotent) and the request starts again on a worker thread, where waiting is fine.
"""

from __future__ import annotations

import threading

# The thread answering an admission on the event loop now, if any (one per process: the loop's).
# A plain global read with get_ident() is cheaper than a threading.local, on every admission.
_answering = None
_get_ident = threading.get_ident


class LeaveEventLoop(BaseException):
    """Raised on the event-loop thread by :func:`leave_event_loop`. A BaseException, so that a
    mutator's ``except Exception`` and the pipeline's failure policies let it through."""


def on_event_loop() -> bool:
    """Whether this thread is answering an admission on the event loop."""
    return _answering is not None and _answering == _get_ident()


def leave_event_loop(why: str = "") -> None:
    """Call before waiting on anything (I/O, a lock held elsewhere, a sleep): on the event-loop
    thread this moves the request to a worker thread, where it starts again; elsewhere it does
    nothing."""
    if on_event_loop():
        raise LeaveEventLoop(why)


class answering_on_event_loop:  # noqa: N801 (used as a function: ``with answering_on_event_loop():``)
    """The extent of one admission answered on the event-loop thread (a class rather than a
    generator-based context manager: it is entered on every admission)."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _answering
        _answering = _get_ident()

    def __exit__(self, *exc) -> None:
        global _answering
        _answering = None
