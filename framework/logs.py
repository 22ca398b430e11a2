"""Logging: plain text or JSON lines, written in batches."""

from __future__ import annotations

import collections
import logging
import re
import sys
import threading
import time
from typing import Optional

import orjson


class _WorkerField(logging.Filter):
    def __init__(self, worker: int):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


# The text format setup() installs: "time LEVEL[ [worker N]] logger: message".
_PLAIN = re.compile(r"%\(asctime\)s %\(levelname\)s([^%]*) %\(name\)s: %\(message\)s")


class Formatter(logging.Formatter):
    """The stdlib's, with the time of day formatted once a second rather than once a line (the host
    writes a line per changed admission)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._second = (None, None, "")  # (second, datefmt, formatted)
        # What sits between the level and the logger's name, when this is setup()'s format: then
        # line() can write a line without a LogRecord.
        plain = _PLAIN.fullmatch(self._fmt or "") if type(self._style) is logging.PercentStyle else None
        self._between = (plain.group(1) if plain and self.datefmt is None and self.default_msec_format == "%s,%03d"
                         else None)

    def line(self, name: str, levelname: str, message: str, created: float,
             worker: Optional[int] = None) -> Optional[str]:
        """What format() makes of a record of these fields (no exception, no stack), or None when
        this formatter's format is not setup()'s (whose text carries the worker already)."""
        if self._between is None:
            return None
        return f"{self._time(created, None)},{int((created - int(created)) * 1000):03d} {levelname}{self._between} " \
               f"{name}: {message}"

    def _time(self, created: float, datefmt: Optional[str]) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second or cached[1] != datefmt:
            cached = self._second = (second, datefmt, time.strftime(datefmt or self.default_time_format,
                                                                     self.converter(second)))
        return cached[2]

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        formatted = self._time(record.created, datefmt)
        if datefmt:
            return formatted
        return self.default_msec_format % (formatted, record.msecs)


class JSONFormatter(Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage()}
        if hasattr(record, "worker"):
            entry["worker"] = record.worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()

    def line(self, name: str, levelname: str, message: str, created: float, worker: Optional[int] = None) -> str:
        entry = {"time": self._time(created, "%Y-%m-%dT%H:%M:%S"), "level": levelname.lower(), "logger": name,
                 "message": message}
        if worker is not None:
            entry["worker"] = worker
        return orjson.dumps(entry).decode()


class BufferedStreamHandler(logging.StreamHandler):
    """A stream handler that writes lines in batches instead of one write (and flush) per line.

    Each record is still formatted by the thread that logs it; the line is queued and a
    background thread writes it: at once when the stream is quiet, then at most one write per
    ``interval`` (20 ms), each with every line queued meanwhile. So a line appears within
    ``interval`` of being logged, and a busy server makes one system call per 20 ms instead of
    one per line. A record at WARNING or above is written at once by the thread that logs it,
    together with everything queued before it, so lines stay in order; everything queued is
    written at exit (``logging.shutdown``). Only a process killed outright loses its last
    ``interval`` of lines.

    Why: the host logs one INFO line per changed admission. With the stdlib handler every line
    takes the handler's lock and makes a write (and flush) system call; at saturation the worker
    threads queue on that lock and hand the GIL around each call, and a line cost 60-120 µs of
    server CPU, a fifth of a whole admission (bench/README.md). If the stream blocks (a full
    pipe), at most ``max_pending`` lines wait; further lines below WARNING are dropped and
    counted, and the count is written once writing resumes.
    """

    def __init__(self, stream=None, interval: float = 0.02, max_pending: int = 100_000):
        super().__init__(stream)
        self.interval = interval
        self.max_pending = max_pending
        self._pending: collections.deque = collections.deque()
        self._dropped = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord):
        # No handler lock per record: appending to a deque is atomic.
        rv = self.filter(record)
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if record.levelno < logging.WARNING:
            self.queue(line)
            return
        self._pending.append(line)
        try:
            self.flush()
        except Exception:
            self.handleError(record)

    def queue(self, line: str) -> None:
        """Queue a line below WARNING, formatted: written within ``interval``."""
        if len(self._pending) >= self.max_pending:
            self._dropped += 1
            return
        self._pending.append(line)
        if not self._wake.is_set():  # one wake-up per batch, not per line
            self._wake.set()

    def flush(self) -> None:
        """Write everything queued, in one write, and flush the stream."""
        with self.lock:
            lines = []
            pop = self._pending.popleft
            try:
                while True:
                    lines.append(pop())
            except IndexError:
                pass
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                lines.append(f"(logging: {dropped} lines below WARNING dropped: the log stream did not keep up)")
            if self.stream is None:
                return
            if lines:
                self.stream.write(self.terminator.join(lines) + self.terminator)
            if hasattr(self.stream, "flush"):
                self.stream.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._pending or self._dropped:
                try:
                    self.flush()
                except Exception:  # the stream is gone; the next WARNING reports it through handleError
                    pass
            self._stop.wait(self.interval)  # lines logged meanwhile go out together

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)  # gone before a fork that may follow
        try:
            self.flush()
        except Exception:
            pass
        finally:
            super().close()


def write(logger: logging.Logger, level: int, msg: str, args: tuple) -> None:
    """``logger.log(level, msg, *args)`` for a level below WARNING, the caller having checked
    ``logger.isEnabledFor(level)``: a line logged on every request (the host's line per changed
    admission).

    When logging is as setup() left it (the record would reach its handler alone, unfiltered), the
    same line is formatted from the message and the time and queued, without a LogRecord and the
    stdlib's walk from logger to handler, which cost ~4 µs a line, more than formatting it. Anything
    else (another handler, a filter, a test's capture) gets the record, as from ``logger.log``."""
    handler = _sole_handler(logger, level)
    line = None
    if handler is not None:
        worker = handler.filters[0].worker if handler.filters else None
        try:
            line = handler.formatter.line(logger.name, logging.getLevelName(level), msg % args, time.time(), worker)
        except Exception:  # logging says what it makes of a message that cannot be formatted
            line = None
    if line is None:
        logger.log(level, msg, *args)
        return
    handler.queue(line)


def _sole_handler(logger: logging.Logger, level: int) -> Optional[BufferedStreamHandler]:
    """setup()'s handler, when a record of ``logger`` at ``level`` would reach it and nothing else
    would see the record: no filter on the logger, no handler on its way up to the root logger,
    the root's one handler a BufferedStreamHandler of this module whose only filter adds the
    worker's number."""
    if logger.filters or logger.disabled:
        return None
    node = logger
    while node.parent is not None:
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    handlers = node.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if (type(handler) is not BufferedStreamHandler or level < handler.level
            or type(handler.formatter) not in (Formatter, JSONFormatter)
            or (handler.filters and (len(handler.filters) != 1 or type(handler.filters[0]) is not _WorkerField))):
        return None
    return handler


def setup(level: str = "INFO", fmt: str = "text", worker: Optional[int] = None, buffered: bool = True) -> None:
    """Log to stderr. ``worker``: the serving process's number, when there are several.
    ``buffered=False`` writes each line at once, with no writer thread: for a process that forks
    (a thread's lock held at the fork would stay held in the child)."""
    handler = BufferedStreamHandler(sys.stderr) if buffered else logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        where = "" if worker is None else f" [worker {worker}]"
        handler.setFormatter(Formatter(f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s"))
    if worker is not None:
        handler.addFilter(_WorkerField(worker))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BufferedStreamHandler):
            old.close()  # its writer thread (there is none in a forked child: nothing to wait for)
    root.handlers[:] = [handler]
    # What no line here shows, not gathered for each record (the logging HOWTO's "Optimization").
    logging._srcfile = None  # the caller's file, line and function: a walk up the stack
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root.setLevel(level.upper())
    # Request-level chatter of the HTTP client is never useful at info level.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
