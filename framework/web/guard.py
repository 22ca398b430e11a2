"""What waitress does not have: deadlines for a request and a handshake, and a lingering close.

waitress closes connections that are *idle* (``channel_timeout``), but a client that sends one
byte every few seconds is never idle: enough of them (slowloris) fill ``connection_limit`` and
lock the API server out. Here every request must arrive whole within ``request_timeout`` of its
first byte, and a TLS handshake must finish within ``handshake_timeout``.

A request refused before its body was read (413 for a body over the limit, 400) is answered and
its connection closed while the client may still be sending the body. Closing a socket with
unread input makes the kernel reset the connection, and the reset can reach the client before
it has read the answer, which is then lost: it sees "connection reset" instead of why. So such a
close is lingering: the write side is shut (the client gets the answer, then the end), and what
still comes in is read and dropped until the client closes too, for at most ``LINGER_SECONDS``.
"""

from __future__ import annotations

import socket
import time
from typing import Optional

from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import WSGITask
from waitress.utilities import build_http_date

from framework.web.parser import RequestParser

#: WSGI environ key: when the request's first byte arrived (``time.monotonic()``), so that an
#: admission's deadline counts the time it waited for a free thread.
ARRIVED = "admission_host.arrived"


#: How long a lingering close waits for the client to stop sending (Apache httpd waits 2 s too).
LINGER_SECONDS = 2.0

_date = (0, "")


def http_date(when: float) -> str:
    """The Date header's value, formatted once a second rather than once an answer."""
    global _date
    cached, second = _date, int(when)
    if cached[0] != second:
        cached = _date = (second, build_http_date(second))
    return cached[1]


class StampedTask(WSGITask):
    def build_response_header(self):
        if self.channel.server.closing and len(self.channel.requests) <= 1:
            # Shutting down: the client's next call opens a new connection, to a replica that
            # stays, rather than reusing this one until the port closes. (Requests pipelined
            # behind this one are answered first: closing now would drop them.)
            self.set_close_on_finish()
        if not any(name.lower() == "date" for name, _ in self.response_headers):
            self.response_headers.append(("Date", http_date(self.start_time)))
        return super().build_response_header()

    def get_environment(self):
        environ = super().get_environment()
        environ[ARRIVED] = getattr(self.request, "arrived", None)
        return environ

    def write(self, data):
        """The header and the body's first bytes in one write. waitress writes them apart, and
        sends each write at once: over TLS that is two records and two system calls an answer."""
        if self.wrote_header or not self.complete or not data:
            return super().write(data)
        header = self.build_response_header()
        self.wrote_header = True
        length = self.content_length
        if not self.has_body or self.chunked_response or (length is not None and len(data) > length):
            self.channel.write_soon(header)
            return super().write(data)  # waitress's own rules for what it cannot send as is
        if length is not None:
            self.content_bytes_written += len(data)
        self.channel.write_soon(header + data)


class DeadlineChannelMixin:
    """Notes when the request being received began (put it before HTTPChannel in the bases), and
    stamps each complete request with it (``ARRIVED`` in its WSGI environ)."""

    request_started = None
    handshaken = True  # plain HTTP has no handshake
    task_class = StampedTask
    parser_class = RequestParser

    def received(self, data):
        if self.request is None and data and self.request_started is None:
            self.request_started = time.monotonic()
        started = self.request_started
        result = super().received(data)
        for request in self.requests:
            if not hasattr(request, "arrived"):
                request.arrived = started
        if self.request is None:  # nothing partial left: the last request arrived whole
            self.request_started = None
        return result


class LingeringCloseMixin:
    """A close after refusing a request's body shuts the write side and drops input first (see
    above). Put it before HTTPChannel in the bases."""

    _linger_until: Optional[float] = None  # set while lingering
    _refused = False  # a request was answered with waitress's error (its body unread)

    def service(self):
        if self.requests and self.requests[0].error is not None:
            self._refused = True
        return super().service()

    def readable(self):
        return self._linger_until is not None or super().readable()

    def writable(self):
        return self._linger_until is None and super().writable()

    def handle_read_event(self):
        # Here rather than in handle_read, which the TLS channel has its own of.
        if self._linger_until is not None:
            self.drop_input()
            return
        super().handle_read_event()

    def handle_close(self):
        if self._refused and self._linger_until is None and self.connected and self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the client is gone already: close
            else:
                self._linger_until = time.monotonic() + LINGER_SECONDS
                return
        super().handle_close()

    def drop_input(self) -> None:
        """While lingering: read and drop what comes in; close once the client has closed, or the
        time is up (also checked by DeadlineServerMixin.maintenance, when nothing comes)."""
        try:
            data = self.socket.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data or time.monotonic() > self._linger_until:
            self.handle_close()


class DeadlineServerMixin:
    """Closes connections whose request or handshake overran its deadline (checked every second)."""

    request_timeout = 10.0
    handshake_timeout = 10.0
    closing = False  # set on shutdown: every answer then closes its connection

    def maintenance(self, now):
        super().maintenance(now)
        mono = time.monotonic()
        for channel in list(self.active_channels.values()):
            started = channel.request_started
            if started is not None and mono - started > self.request_timeout:
                channel.will_close = True
            elif not channel.handshaken and now - channel.creation_time > self.handshake_timeout:
                channel.will_close = True
            linger = getattr(channel, "_linger_until", None)
            if linger is not None and mono > linger:
                channel.handle_close()


class GuardedChannel(LingeringCloseMixin, DeadlineChannelMixin, HTTPChannel):
    pass


class GuardedServer(DeadlineServerMixin, TcpWSGIServer):
    """Plain HTTP (behind a TLS proxy)."""

    channel_class = GuardedChannel
