"""The event loop's kept epoll set (framework/web/poller.py): every connection is served, whether its
answer comes from the loop's thread or a worker thread, whether it is new, reused or slow to read."""

import base64
import http.client
import random
import socket
import threading
import time

import orjson
import pytest

from framework import Mutator, leave_event_loop
from framework.config import Config
from framework.host import Host
from framework.testing import pod, review
from framework.web.poller import Poller
from framework.web.serve import Server
from tests.e2e.cluster import Certs
from tests.unit.helpers import make_plugin

BIG = 6 * 1024 * 1024  # more than the socket buffers take (tcp_wmem max 4 MiB)
SERVED_WITHIN = 2.5  # an answer, on a loaded machine; a connection left out of the poll set waits 5 s and fails


class PatientPoller(Poller):
    """The loop's poller, waiting up to a minute when idle rather than a second. A connection the loop
    failed to ask again is served anyway when a poll times out (and the once-a-second maintenance
    asks every one): that stall, under a second, would not stand out from a loaded machine's delays.
    Here it lasts until the client gives up."""

    def turn(self, timeout: float, ask_all: bool = False) -> None:
        super().turn(60.0 if timeout >= 1.0 else timeout, ask_all=ask_all)


def mutate(req):
    labels = req.object["metadata"].get("labels") or {}
    if labels.get("where") == "worker":
        leave_event_loop("this test's pods labelled where=worker wait")
    value = "x" * BIG if labels.get("size") == "big" else threading.current_thread().name
    req.object["metadata"].setdefault("annotations", {})["served-by"] = value


@pytest.fixture(scope="module", params=["http", "https"])
def server(request, tmp_path_factory):
    plugin = make_plugin("poller", admission_host_mutators=lambda: [
        Mutator(name="served-by", mutate=mutate, paths=("metadata.annotations",), nonblocking=True)])
    config = Config(enabled_plugins=[], bind_address="127.0.0.1", port=0, threads=4, max_body_bytes=1 << 20)
    context = None
    if request.param == "https":
        context = Certs(tmp_path_factory.mktemp("pki")).serve(config)
    else:
        config.insecure_http = True
    srv = Server(Host(config, extra_plugins=[plugin]), config)
    srv.poller = PatientPoller(srv.map, srv.server)
    thread = threading.Thread(target=srv.run, name="event-loop", daemon=True)
    thread.start()
    yield srv, context
    srv.shutdown()
    thread.join(10)


def connection(srv, context):
    if context is None:
        return http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    return http.client.HTTPSConnection("127.0.0.1", srv.port, context=context, timeout=5)


def ask(conn, name: str, **labels) -> str:
    sent = review(pod(name, labels=labels))
    conn.request("POST", "/mutate", body=orjson.dumps(sent), headers={"Content-Type": "application/json"})
    answer = orjson.loads(conn.getresponse().read())["response"]
    assert answer["uid"] == sent["request"]["uid"]
    patch = orjson.loads(base64.b64decode(answer["patch"]))
    return patch[-1]["value"]["served-by"] if patch[-1]["path"] == "/metadata/annotations" else patch[-1]["value"]


def idle(srv) -> bool:
    """Only the listening socket and waitress's trigger are left in the poll set."""
    return set(srv.poller.interest) == {srv.server._fileno, srv.server.trigger._fileno}


def test_many_keepalive_connections_answered_on_the_loop_and_on_workers(server):
    srv, context = server
    conns = [connection(srv, context) for _ in range(40)]
    for _ in range(3):
        order = list(enumerate(conns))
        random.shuffle(order)
        for i, conn in order:
            where = "worker" if i % 2 else "loop"
            started = time.monotonic()
            served_by = ask(conn, f"p{i}", where=where)
            assert time.monotonic() - started < SERVED_WITHIN
            assert served_by.startswith("waitress") if where == "worker" else served_by == "event-loop"
        errors = []

        def one(i, conn):
            try:
                ask(conn, f"q{i}", where="worker" if i % 3 == 0 else "loop")
            except Exception as exc:  # collected: a stalled connection times out here
                errors.append(exc)
        threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors
    for conn in conns:
        conn.close()
    deadline = time.monotonic() + 5
    while not idle(srv) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert idle(srv), srv.poller.interest


def test_connections_opened_and_closed_one_after_another(server):
    """Descriptors are reused by new connections: each is served."""
    srv, context = server
    for i in range(60):
        conn = connection(srv, context)
        started = time.monotonic()
        ask(conn, f"r{i}", where="worker" if i % 2 else "loop")
        assert time.monotonic() - started < SERVED_WITHIN
        conn.close()


@pytest.mark.parametrize("where", ["loop", "worker"])
def test_an_answer_larger_than_the_socket_takes_is_sent_whole_to_a_slow_reader(server, where):
    srv, context = server
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    body = orjson.dumps(review(pod("big", labels={"size": "big", "where": where})))
    sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    time.sleep(0.5)  # the answer fills the socket buffers; the rest must wait for POLLOUT
    started = time.monotonic()
    response = http.client.HTTPResponse(sock)
    response.begin()
    answer = orjson.loads(response.read())["response"]
    # (not waiting for the maintenance to notice the connection wants to write)
    assert time.monotonic() - started < SERVED_WITHIN
    patch = orjson.loads(base64.b64decode(answer["patch"]))
    assert len(patch[-1]["value"]["served-by"]) == BIG
    sock.close()
    # and the server goes on serving
    conn = connection(srv, context)
    ask(conn, "after", where=where)
    conn.close()
