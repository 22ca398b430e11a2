"""Slow and abusive clients are cut off by deadlines while well-behaved requests keep flowing."""

import http.client
import socket
import ssl
import threading
import time

import orjson
import pytest

from framework.config import Config
from framework.host import Host
from framework.testing import pod, review
from framework.web.serve import Server
from tests.e2e.cluster import Certs

# How long a client has to send a whole request (or finish its TLS handshake). A request held up
# behind slow clients would wait that long for them to be cut off: one served in half of it was not.
REQUEST_TIMEOUT = 3.0
SERVED_WITHIN = REQUEST_TIMEOUT / 2
# The deadline plus the once-a-second check that enforces it, and room for a loaded machine.
CUT_OFF_WITHIN = REQUEST_TIMEOUT + 5.0


@pytest.fixture(scope="module", params=["https", "http"])
def server(request, tmp_path_factory):
    config = Config(enabled_plugins=["pod_deletion_cost"], bind_address="127.0.0.1", port=0,
                    request_timeout_seconds=REQUEST_TIMEOUT, threads=4)
    context = None
    if request.param == "https":
        context = Certs(tmp_path_factory.mktemp("pki")).serve(config)
    else:
        config.insecure_http = True
    srv = Server(Host(config), config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield srv, context
    srv.shutdown()
    thread.join(10)


def connect(srv, context, handshake=True):
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    if context is not None and handshake:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


def good_request(srv, context):
    conn = (http.client.HTTPSConnection("127.0.0.1", srv.port, context=context, timeout=CUT_OFF_WITHIN) if context
            else http.client.HTTPConnection("127.0.0.1", srv.port, timeout=CUT_OFF_WITHIN))
    body = orjson.dumps(review(pod("p", labels={"example.com/deletion-cost": "-3"})))
    started = time.monotonic()
    conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    answer = orjson.loads(resp.read())
    conn.close()
    assert resp.status == 200 and answer["response"]["patch"]
    return time.monotonic() - started


def closed_by_server(sock, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_slowloris_is_cut_off_and_others_are_served(server):
    srv, context = server
    slow = [connect(srv, context) for _ in range(40)]
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            for s in slow:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            time.sleep(0.2)

    for s in slow:
        s.send(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: ")
    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        latencies = [good_request(srv, context) for _ in range(20)]
        assert max(latencies) < SERVED_WITHIN, latencies
        assert all(closed_by_server(s, CUT_OFF_WITHIN) for s in slow)
    finally:
        stop.set()
        for s in slow:
            s.close()
    assert good_request(srv, context) < SERVED_WITHIN


def test_a_body_that_never_finishes_is_cut_off(server):
    srv, context = server
    sock = connect(srv, context)
    sock.send(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    assert closed_by_server(sock, CUT_OFF_WITHIN)
    sock.close()


def test_a_stalled_tls_handshake_is_cut_off(server):
    srv, context = server
    if context is None:
        pytest.skip("plain HTTP has no handshake")
    raw = connect(srv, context, handshake=False)  # connects, never says ClientHello
    assert closed_by_server(raw, CUT_OFF_WITHIN)
    raw.close()


def test_idle_keepalive_connections_do_not_block_others(server):
    srv, context = server
    idle = [connect(srv, context) for _ in range(100)]
    try:
        assert good_request(srv, context) < SERVED_WITHIN
    finally:
        for s in idle:
            s.close()



@pytest.mark.parametrize("field", [b"X-A : b", b"X-A: " + b" " * 200_000 + b"\x00"], ids=["invalid", "stalling"])
def test_a_bad_header_is_answered_400_at_once(server, field):
    """Even one that would stall the parser: waitress's header pattern takes time quadratic in a run
    of blanks that ends badly (minutes for 200 KB), on the thread that serves every request."""
    srv, context = server
    sock = connect(srv, context)
    started = time.monotonic()
    sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n")
    sock.settimeout(CUT_OFF_WITHIN)
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.0 400 Bad Request"), answer
    assert time.monotonic() - started < SERVED_WITHIN
    sock.close()
    assert good_request(srv, context) < SERVED_WITHIN
