"""Several serving processes on one port: one Python process is one core (the GIL).

``admission-host serve --workers N`` binds the listening socket once, then forks N workers that
each build their own host (plugins, caches, controllers behind the leader Lease) and serve on the
inherited socket; the kernel hands each new connection to whichever worker accepts it first.
The first process only supervises: it forwards SIGTERM (each worker drains as a single process
does), replaces a worker that dies, and gives up when workers keep failing at start-up.

Each worker keeps its own caches (N list+watch streams to the API server, N copies in memory)
rather than one process feeding the others: nothing is shared, so a worker that dies takes
nothing with it, and reads stay plain dict lookups. Metrics are kept in files shared by the
workers (prometheus_client's multiprocess mode), so ``/metrics`` on any of them shows the sum.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import socket
import tempfile
import time
from typing import Callable, Dict

from framework.config import ConfigError
from framework.plugins import PluginError

log = logging.getLogger("admission_host.workers")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
QUICK_FAILURE = 10.0  # a worker that fails within this many seconds of its start...
QUICK_FAILURES = 3    # ...this many times in a row: something is wrong with all of them
CPU_MAX = "/sys/fs/cgroup/cpu.max"  # cgroup v2: "QUOTA PERIOD", QUOTA "max" for no limit


def available_cpus() -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's
    CPU limit), rounded up."""
    cpus = len(os.sched_getaffinity(0))
    try:
        with open(CPU_MAX, encoding="ascii") as f:
            quota, period = f.read().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def workers_arg(value: str) -> int:
    """``--workers``: a positive number, or ``auto`` (the CPUs the process may use)."""
    if value == "auto":
        return available_cpus()
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"--workers must be a positive number or auto, got {value!r}") from None
    if n < 1:
        raise ValueError(f"--workers must be a positive number or auto, got {value!r}")
    return n


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def use_shared_metrics() -> tuple:
    """Keep metric values in files every worker adds to. Returns the directory and whether it was
    made here (else the environment named it). Must run before any metric is created."""
    path, made = os.environ.get(MULTIPROC_ENV), False
    if not path:
        path, made = tempfile.mkdtemp(prefix="admission-host-metrics-"), True
        os.environ[MULTIPROC_ENV] = path
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # chosen at import: choose again now
    return path, made


class Supervisor:
    """Forks ``count`` workers running ``work(index) -> exit status`` and keeps them running."""

    def __init__(self, count: int, work: Callable[[int], int]):
        self.count = count
        self.work = work
        self.children: Dict[int, tuple] = {}  # pid -> (index, started)
        self.stopping = False
        self.quick_failures = 0

    def run(self) -> int:
        metrics_dir, own_dir = use_shared_metrics()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        try:
            for index in range(self.count):
                self._spawn(index)
            log.info("serving with %d worker processes: %s", self.count, " ".join(map(str, self.children)))
            return self._watch()
        finally:
            if own_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = self.work(index)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except (ConfigError, PluginError, ValueError) as exc:  # as a single process says them: exit 2
                log.error("worker %d: %s", index, exc)
                code = 2
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = (index, time.monotonic())

    def _stop(self, signum, frame) -> None:
        if not self.stopping:
            log.info("stopping %d workers", len(self.children))
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _watch(self) -> int:
        status = 0
        while self.children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            index, started = self.children.pop(pid, (None, 0.0))
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)
            if self.stopping:
                status = status or (code if code > 0 else 0)
                continue
            if code == 2:  # a configuration error: every worker would fail alike
                log.error("worker %d exited with 2 (a configuration error); stopping", index)
                self._stop(None, None)
                status = 2
                continue
            quick = time.monotonic() - started < QUICK_FAILURE
            self.quick_failures = self.quick_failures + 1 if quick else 0
            if self.quick_failures >= QUICK_FAILURES:
                log.error("workers keep failing at start-up (the last exited with %s); stopping", code)
                self._stop(None, None)
                status = 1
                continue
            log.warning("worker %d (pid %d) exited with %s; starting a new one", index, pid, code)
            self._spawn(index)
        return status
