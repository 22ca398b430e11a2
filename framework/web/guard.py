"""Deadlines waitress does not have: a request must finish arriving, a TLS handshake must finish.

waitress closes connections that are *idle* (``channel_timeout``), but a client that sends one
byte every few seconds is never idle: enough of them (slowloris) fill ``connection_limit`` and
lock the API server out. Here every request must arrive whole within ``request_timeout`` of its
first byte, and a TLS handshake must finish within ``handshake_timeout``.
"""

from __future__ import annotations

import time

from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer


class DeadlineChannelMixin:
    """Notes when the request being received began (put it before HTTPChannel in the bases)."""

    request_started = None
    handshaken = True  # plain HTTP has no handshake

    def received(self, data):
        if self.request is None and data and self.request_started is None:
            self.request_started = time.monotonic()
        result = super().received(data)
        if self.request is None:  # nothing partial left: the last request arrived whole
            self.request_started = None
        return result


class DeadlineServerMixin:
    """Closes connections whose request or handshake overran its deadline (checked every second)."""

    request_timeout = 10.0
    handshake_timeout = 10.0

    def maintenance(self, now):
        super().maintenance(now)
        mono = time.monotonic()
        for channel in list(self.active_channels.values()):
            started = channel.request_started
            if started is not None and mono - started > self.request_timeout:
                channel.will_close = True
            elif not channel.handshaken and now - channel.creation_time > self.handshake_timeout:
                channel.will_close = True


class GuardedChannel(DeadlineChannelMixin, HTTPChannel):
    pass


class GuardedServer(DeadlineServerMixin, TcpWSGIServer):
    """Plain HTTP (behind a TLS proxy)."""

    channel_class = GuardedChannel
