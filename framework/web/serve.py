"""Serve the falcon app on waitress, over HTTPS (or plain HTTP behind a TLS proxy), and drain on SIGTERM."""

from __future__ import annotations

import collections
import logging
import signal
import threading
import time
from typing import Callable, Optional

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.task import ThreadedTaskDispatcher

from framework.config import Config
from framework.event_loop import LeaveEventLoop, answering_on_event_loop, on_event_loop
from framework.web.app import ServingState, create_app
from framework.web.guard import GuardedServer
from framework.web.poller import Poller
from framework.web.tls import CertificateReloader, TLSWSGIServer

log = logging.getLogger("admission_host.serve")

# waitress warns "Task queue depth is N" for every queued request when connections outnumber
# threads; that is normal for keep-alive API server connections and costs ~15% throughput.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)


class LoopDispatcher(ThreadedTaskDispatcher):
    """waitress's worker threads, except for admissions whose mutators are all nonblocking: those
    are answered on the event-loop thread, after each turn of the loop (see framework/event_loop.py).

    A request that has to wait after all (:class:`LeaveEventLoop`) goes to a worker thread with its
    body rewound; nothing of the first attempt was answered."""

    def __init__(self, pipeline, metrics):
        super().__init__()
        self.pipeline, self.metrics = pipeline, metrics
        self.loop_thread: Optional[int] = None  # set by Server.run
        self.deferred: collections.deque = collections.deque()

    def add_task(self, channel):
        # On the loop thread (a request just arrived whole), never from a worker thread.
        if threading.get_ident() == self.loop_thread and self.pipeline.nonblocking:
            request = channel.requests[0]
            # (a request waitress could not parse has an error and may have no path)
            if not request.error and request.path == "/mutate" and request.command == "POST":
                self.deferred.append(channel)
                return
        super().add_task(channel)

    def answer_deferred(self) -> None:
        while self.deferred:
            channel = self.deferred.popleft()
            body = channel.requests[0].get_body_stream()
            start = body.tell()
            try:
                with answering_on_event_loop():
                    channel.service()  # a pipelined request behind it comes back through add_task
            except LeaveEventLoop as exc:
                log.debug("admission moved to a worker thread: %s", exc)
                self.metrics.event_loop_handoffs.inc()
                body.seek(start)
                super().add_task(channel)

    @staticmethod
    def wake_loop(pull_trigger: Callable[[], None]) -> None:
        """waitress wakes the event loop after every answer (a byte down a pipe, read back by the
        loop): for nothing when the loop's own thread answers, as its next turn asks that
        connection again (it had events: see framework/web/poller.py). (A shutdown asked meanwhile
        by a signal handler, on that thread too, is seen as that turn ends.)"""
        if not on_event_loop():
            pull_trigger()


class Server:
    """The host's HTTP(S) server: ``run()`` blocks until :meth:`shutdown` (or SIGTERM/SIGINT)."""

    def __init__(self, host, config: Config, sock=None, controllers: bool = True):
        """``sock``: a listening socket to serve on (a worker of several), else one is bound.
        ``controllers=False`` keeps the plugins' controllers from running in this process."""
        self.host = host
        self.config = config
        self.controllers = controllers
        self.state = ServingState()
        self.app = create_app(host, max_body_bytes=config.max_body_bytes, state=self.state)
        self.tls: Optional[CertificateReloader] = None
        if not config.insecure_http:
            if not (config.tls_cert_file and config.tls_private_key_file):
                raise ValueError("--tls-cert-file and --tls-private-key-file are required "
                                 "(or --cert-secret, or --insecure-http)")
            self.tls = CertificateReloader(config.tls_cert_file, config.tls_private_key_file, host.metrics)
        self.map: dict = {}
        self.dispatcher = LoopDispatcher(host.pipeline, host.metrics)
        self.dispatcher.set_thread_count(config.threads)
        # waitress refuses a body of max_request_body_size bytes or more; the limit is the largest
        # accepted body, as /mutate applies it.
        # cleanup_interval: how often idle connections and the deadlines of guard.py are checked.
        adj = Adjustments(host=config.bind_address, port=config.port, threads=config.threads,
                          max_request_body_size=config.max_body_bytes + 1, ident="admission-host",
                          asyncore_use_poll=True, expose_tracebacks=False, connection_limit=1000,
                          channel_timeout=config.idle_timeout_seconds, cleanup_interval=1,
                          # No X-Forwarded-* header is read here: skip the middleware that strips them.
                          clear_untrusted_proxy_headers=False)
        kw = dict(map=self.map, dispatcher=self.dispatcher, adj=adj)
        if sock is not None:
            kw.update(_sock=sock, bind_socket=False)
        self.server = TLSWSGIServer(self.app, self.tls, **kw) if self.tls else GuardedServer(self.app, **kw)
        pull_trigger = self.server.pull_trigger
        self.server.pull_trigger = lambda: self.dispatcher.wake_loop(pull_trigger)
        self.server.request_timeout = self.server.handshake_timeout = config.request_timeout_seconds
        self._stop = threading.Event()
        self._stop_at: Optional[float] = None  # a delayed shutdown's time (time.monotonic())
        self.poller: Optional[Poller] = None  # made by the serving process, at its first turn

    @property
    def port(self) -> int:
        return self.server.effective_port

    @property
    def url(self) -> str:
        return f"{'http' if self.tls is None else 'https'}://{self.server.effective_host}:{self.port}"

    def shutdown(self, delay: float = 0.0) -> None:
        """Stop serving: at once, or after ``delay`` seconds of failing readiness while still
        answering (each answer with "Connection: close"), so the replica stops being an endpoint
        before its port closes. Asked again while it waits, it stops at once. Safe in a signal
        handler: it only sets flags and wakes the loop."""
        if delay > 0 and self._stop_at is None:
            self.state.draining = self.server.closing = True
            self._stop_at = time.monotonic() + delay
        else:
            self._stop.set()
        self.server.pull_trigger()

    def install_signal_handlers(self) -> None:
        # SIGTERM is how the kubelet stops a pod: wait for the endpoint's removal. SIGINT is a person.
        signal.signal(signal.SIGTERM, lambda *_: self.shutdown(self.config.shutdown_delay_seconds))
        signal.signal(signal.SIGINT, lambda *_: self.shutdown())

    def run(self, on_ready: Optional[Callable[[], None]] = None) -> None:
        if self.tls is not None:
            self.tls.watch(self.config.cert_reload_interval)
        self.host.start(controllers=self.controllers)
        log.info("serving %s (plugins: %s; mutators: %s)", self.url,
                 ", ".join(n for n, p in self.host.pluginmanager.list_name_plugin() if p is not None) or "none",
                 ", ".join(m.name for m in self.host.pipeline.mutators) or "none")
        if on_ready:
            on_ready()
        self.dispatcher.loop_thread = threading.get_ident()
        announced = False
        while not self._stop.is_set():
            if self._stop_at is None:
                self._turn(1.0)
                continue
            left = self._stop_at - time.monotonic()
            if not announced:
                log.info("shutting down in %.1fs: not ready, still answering until the endpoint is gone", left)
                announced = True
            if left <= 0:
                break
            self._turn(min(1.0, left))
        self._drain()

    def _turn(self, timeout: float, count: int = 1, ask_all: bool = False) -> None:
        """One or more turns of the event loop, then the admissions it answers itself.
        ``ask_all``: connections were changed from outside the loop (the drain)."""
        if self.poller is None:
            self.poller = Poller(self.map, self.server)
        for _ in range(count):
            self.poller.turn(timeout, ask_all=ask_all)
            self.dispatcher.answer_deferred()

    def _drain(self) -> None:
        """Stop accepting, finish what is in flight, then stop the host (which releases the lease)."""
        self.state.draining = self.server.closing = True
        log.info("shutting down: no new connections; finishing requests in flight")
        self.server.accepting = False
        self.server.del_channel()
        self.server.socket.close()
        deadline = time.monotonic() + self.config.shutdown_grace_seconds
        while time.monotonic() < deadline:
            busy = False
            for channel in list(self.server.active_channels.values()):
                if channel.requests or channel.total_outbufs_len or getattr(channel, "_pending", b""):
                    busy = True
                elif not channel.will_close:
                    channel.will_close = True  # idle keep-alive connection: close it
            if not busy:
                break
            self._turn(0.1, ask_all=True)
        else:
            log.warning("shutdown grace period over with requests still in flight")
        # Let the main loop close the connections just marked, then stop the workers.
        self._turn(0.05, count=2, ask_all=True)
        # Idle workers stop at once; a worker still busy after the grace period is not waited for
        # (the threads are daemons), so the process exits within the grace period.
        self.dispatcher.shutdown(cancel_pending=True, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        wasyncore.close_all(self.map)
        self.poller.close()
        if self.tls is not None:
            self.tls.stop()
        self.host.stop()
        log.info("stopped")
