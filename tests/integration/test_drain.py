"""SIGTERM: requests in flight finish, nothing new is taken, the process exits 0 in time."""

from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

from tests.integration.conftest import DELETION_COST_ANNOTATION, decoded_patch, labelled_pod, review
from tests.integration.slow_plugin import SLEPT

TEST_PLUGIN = "tests.integration.slow_plugin"


def _slow_server(start_server, cert_files, *args):
    return start_server("--threads", "4", *args, tls=cert_files, launcher=True, extra_plugins=[TEST_PLUGIN])


def test_sigterm_finishes_requests_in_flight(start_server, cert_files):
    # A deadline the last queued requests (3 s after arriving) keep well inside.
    server = _slow_server(start_server, cert_files, "--shutdown-grace-seconds", "20",
                          "--admission-deadline-seconds", "10")
    count, seconds = 10, 1.0  # more slow requests than worker threads: some wait in the queue
    answers, errors = {}, []

    def call(i):
        try:
            pod = labelled_pod(str(i), name=f"slow-{i}", labels={"slow": str(seconds)})
            answers[i] = server.mutate(review(pod, uid=f"slow-{i}"), timeout=30)
        except Exception as exc:  # noqa: BLE001
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # every request has reached the server; 4 are running, 6 are queued
    signalled = time.monotonic()
    server.terminate()

    # New connections are refused at once, long before the requests in flight are done (2.5 s).
    deadline = time.monotonic() + 1.25
    while not server.refuses_connections():
        assert time.monotonic() < deadline, "the server still accepts connections after SIGTERM"
        time.sleep(0.02)

    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(answers) == list(range(count))
    for i, answer in answers.items():
        assert answer["response"]["uid"] == f"slow-{i}"
        patched = {op["path"]: op["value"] for op in decoded_patch(answer)}
        assert patched == {"/metadata/annotations": {SLEPT: str(seconds), DELETION_COST_ANNOTATION: str(i)}}

    assert server.proc.wait(30) == 0
    took = time.monotonic() - signalled
    # 10 requests of 1 s on 4 threads: 3 rounds, less the half second already spent (2.5 s); not
    # the 20 s grace period.
    assert took < 10.0, f"exit took {took:.1f}s"
    out = server.output()
    assert "shutting down" in out and "stopped" in out
    assert "grace period over" not in out


def test_readyz_answers_503_while_draining(start_server, cert_files):
    """A request queued behind a slow one on the same connection is served while draining."""
    server = _slow_server(start_server, cert_files, "--shutdown-grace-seconds", "20")
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with server.context().wrap_socket(raw, server_hostname="127.0.0.1") as s:
        body = orjson.dumps(review(labelled_pod("1", labels={"slow": "1.5"}), uid="first"))
        s.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s"
                  b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n" % (len(body), body))
        time.sleep(0.4)
        server.terminate()
        reader = s.makefile("rb")
        from tests.integration.test_tls import _read_answer

        status, first = _read_answer(reader)
        assert status == 200 and orjson.loads(first)["response"]["uid"] == "first"
        status, ready = _read_answer(reader)
        assert status == 503 and b"shutting down" in ready
    assert server.proc.wait(20) == 0


def test_idle_keep_alive_connections_are_closed_on_sigterm(start_server, cert_files):
    server = _slow_server(start_server, cert_files)
    conn = server.connection()
    server.mutate(review(labelled_pod("1")), conn=conn)
    sock = conn.sock
    sock.settimeout(20)
    server.terminate()
    started = time.monotonic()
    assert sock.recv(100) == b""  # closed by the server, promptly, so the client reconnects elsewhere
    assert time.monotonic() - started < 5.0  # not held for the 15 s grace period
    conn.close()
    assert server.proc.wait(10) == 0


def test_sigterm_with_nothing_in_flight_exits_at_once(start_server, cert_files):
    server = start_server(tls=cert_files)
    server.mutate(review(labelled_pod("1")))
    started = time.monotonic()
    server.terminate()
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 5.0  # not the 15 s grace period


def test_grace_period_bounds_the_wait(start_server, cert_files):
    # A request that would take 60 s (its deadline too): only the 1 s grace period can end the wait.
    server = _slow_server(start_server, cert_files, "--shutdown-grace-seconds", "1",
                          "--admission-deadline-seconds", "60")
    result = {}

    def call():
        try:
            result["answer"] = server.mutate(review(labelled_pod("1", labels={"slow": "60"})), timeout=90)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    t = threading.Thread(target=call, daemon=True)
    t.start()
    time.sleep(0.4)
    started = time.monotonic()
    server.terminate()
    assert server.proc.wait(30) == 0
    took = time.monotonic() - started
    assert 0.9 < took < 10, took  # the grace period, plus the time to stop; not the request's 60 s
    t.join(10)
    assert "error" in result  # the request that outlived the grace period was cut off
    assert "grace period over" in server.output()


@pytest.mark.parametrize("sig", ["SIGINT"])
def test_sigint_also_drains(start_server, cert_files, sig):
    import signal

    server = _slow_server(start_server, cert_files)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "answer", server.mutate(review(labelled_pod("1", labels={"slow": "1"})), timeout=30)), daemon=True)
    t.start()
    time.sleep(0.4)
    server.proc.send_signal(getattr(signal, sig))
    t.join(15)
    assert result["answer"]["response"]["allowed"] is True
    assert server.proc.wait(10) == 0
