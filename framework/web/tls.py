"""HTTPS inside waitress: a TLS channel over memory BIOs, and certificates re-read from disk.

waitress has no TLS. Rather than a proxy hop in front of it (~125 µs a request measured with
nginx), each waitress channel encrypts and decrypts in place with ``ssl.SSLObject`` over memory
BIOs: waitress keeps its event loop, its HTTP parser and its thread pool, and only the bytes on
the socket change. A new certificate applies to new connections; established ones keep theirs.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import threading
import time
from typing import Optional

from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from framework.web.guard import DeadlineChannelMixin, DeadlineServerMixin, LingeringCloseMixin

log = logging.getLogger(__name__)

# Modern AEAD suites for TLS 1.2; TLS 1.3 suites are always on.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
# How long a connection being closed may take to read the end of its answer before it is dropped
# (checked at waitress's cleanup_interval, 30 s).
LINGER_SECONDS = 30.0


class CertificateReloader:
    """Holds the current ``SSLContext``; :meth:`maybe_reload` swaps it when the files change.

    A half-written pair (certificate updated, key not yet) fails to load and the old context stays
    in use until the pair is consistent again, so a rotation never breaks serving.
    """

    def __init__(self, cert_file: str, key_file: str, metrics=None):
        self.cert_file, self.key_file, self.metrics = cert_file, key_file, metrics
        self._stamp = self._file_stamp()
        try:
            self.context = self._load()  # at start-up a bad pair is fatal, with the reason
        except (OSError, ssl.SSLError) as exc:  # ssl's own message names neither file
            raise ValueError(f"cannot load the serving certificate {cert_file} with key {key_file}: "
                             f"{exc.strerror or exc}") from exc
        self._failed_stamp = None
        self._stop = threading.Event()

    def _file_stamp(self):
        stamps = []
        for path in (self.cert_file, self.key_file):
            try:
                st = os.stat(path)  # follows the ..data symlinks of Secret volumes
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(CIPHERS)
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        if hasattr(ssl, "OP_NO_RENEGOTIATION"):
            ctx.options |= ssl.OP_NO_RENEGOTIATION
        # No TLS 1.3 session tickets: the API server's webhook client never resumes a session
        # (client-go's transport has no session cache), and sending them is ~15 % of a handshake.
        ctx.num_tickets = 0
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.load_cert_chain(self.cert_file, self.key_file)
        self.not_after = _not_after(self.cert_file)
        if self.metrics is not None and self.not_after is not None:
            self.metrics.certificate_expiry.set(self.not_after.timestamp())
        return ctx

    def maybe_reload(self) -> bool:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        try:
            context = self._load()
        except (OSError, ssl.SSLError) as exc:
            if stamp != self._failed_stamp:
                log.warning("serving certificate changed but does not load yet (%s); keeping the old one", exc)
                self._failed_stamp = stamp
            return False
        self.context, self._stamp = context, stamp
        log.info("serving certificate reloaded from %s (valid until %s)", self.cert_file, self.not_after)
        return True

    def watch(self, interval: float) -> None:
        def loop():
            while not self._stop.wait(interval):
                try:
                    self.maybe_reload()
                except Exception:
                    log.exception("certificate reload failed")
        threading.Thread(target=loop, name="cert-reload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def _not_after(cert_file: str) -> Optional[datetime.datetime]:
    try:
        from cryptography import x509

        with open(cert_file, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        return getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    except Exception:
        return None


class TLSChannel(LingeringCloseMixin, DeadlineChannelMixin, HTTPChannel):
    """A waitress channel whose socket bytes are TLS records."""

    def __init__(self, server, sock, addr, adj, map=None):
        self._pending = b""  # ciphertext the socket has not taken yet
        self._tls_lock = threading.RLock()  # the main loop reads while a worker thread writes
        self._bio_in, self._bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = server.tls.context.wrap_bio(self._bio_in, self._bio_out, server_side=True)
        self.handshaken = False
        self._close_deadline: Optional[float] = None  # set while the last answer bytes drain out
        super().__init__(server, sock, addr, adj, map)

    def writable(self):
        return bool(self._pending) or super().writable()

    def handle_read(self):
        try:
            raw = self.socket.recv(self.adj.recv_bytes)
        except BlockingIOError:
            return
        except OSError:
            self.handle_close()
            return
        if not raw:  # the peer closed the connection
            self.handle_close()
            self.connected = False
            return
        chunks, failed = [], None
        with self._tls_lock:
            self._bio_in.write(raw)
            try:
                if not self.handshaken:
                    self._tls.do_handshake()
                    self.handshaken = True
                    if self.server.tls.metrics is not None:
                        self.server.tls.metrics.tls_handshakes.inc()
                while True:
                    chunk = self._tls.read(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                failed = "closed by peer"
            except ssl.SSLError as exc:
                failed = exc
            self._queue(self._bio_out.read())
            self._flush_pending()
        if failed is not None:
            if not isinstance(failed, str):
                log.debug("TLS error from %s: %s", self.addr, failed)
            self.handle_close()
            return
        if chunks:
            self.last_activity = time.time()
            self.received(b"".join(chunks))

    def send(self, data, do_close=True):
        # Called by waitress with plaintext; answer how much of it was taken.
        with self._tls_lock:
            if self._pending and not self._flush_pending(do_close):
                return 0  # back-pressure: waitress retries when the socket is writable
            try:
                taken = self._tls.write(data)
            except ssl.SSLError as exc:
                raise OSError(f"TLS write failed: {exc}") from exc
            self._queue(self._bio_out.read())
            self._flush_pending(do_close)
            return taken

    def handle_write(self):
        with self._tls_lock:
            if self._pending and not self._flush_pending():
                return
            if self._fileno is None:
                return  # the flush found the peer gone and closed the channel
            if self._close_deadline is not None:
                self.handle_close()  # a close that waited for the last records: they are out now
                return
        super().handle_write()

    def handle_close(self):
        with self._tls_lock:
            if self._pending and self.will_close and self._close_deadline is None and self._fileno is not None:
                # An orderly close (after "Connection: close", or an idle timeout) with records of the
                # answer still unsent, e.g. a large answer to a slow reader. Never block the event loop
                # waiting for the peer: keep the channel until the socket has taken them (see
                # handle_write), or until TLSWSGIServer.maintenance gives up on it.
                self._flush_pending(do_close=False)
                if self._pending:
                    self._close_deadline = time.monotonic() + LINGER_SECONDS
                    return
            self._pending = b""
            self._close_deadline = None
        super().handle_close()

    def abort_close(self) -> None:
        """Close now, dropping unsent records."""
        with self._tls_lock:
            self._pending = b""
            self._close_deadline = None
        super().handle_close()

    def _queue(self, ciphertext: bytes) -> None:
        if ciphertext:
            self._pending += ciphertext

    def _flush_pending(self, do_close: bool = True) -> bool:
        """Send queued ciphertext; True when nothing is left."""
        while self._pending:
            try:
                sent = self.socket.send(self._pending)
            except BlockingIOError:
                return False
            except OSError:
                self._pending = b""
                if do_close:
                    self.handle_close()
                return True
            self._pending = self._pending[sent:]
        return True


class TLSWSGIServer(DeadlineServerMixin, TcpWSGIServer):
    channel_class = TLSChannel

    def __init__(self, application, tls: CertificateReloader, **kw):
        self.tls = tls
        super().__init__(application, **kw)

    def maintenance(self, now):
        """waitress's idle-channel check, plus: give up on closes whose peer stopped reading."""
        super().maintenance(now)
        mono = time.monotonic()
        for channel in list(self.active_channels.values()):
            deadline = getattr(channel, "_close_deadline", None)
            if deadline is not None and mono > deadline:
                log.debug("dropping the unsent end of an answer to %s: the peer stopped reading", channel.addr)
                channel.abort_close()
