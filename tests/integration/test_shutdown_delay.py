"""SIGTERM in a rolling update: the replica fails readiness at once but keeps answering (and asks
its clients to reconnect elsewhere) for the shutdown delay, then stops accepting and exits 0.
SIGINT, or a second SIGTERM, skips the delay."""

from __future__ import annotations

import signal
import time

import orjson

from tests.integration.conftest import decoded_patch, deletion_cost_op, labelled_pod, review

DELAY = 6.0


def test_sigterm_keeps_answering_while_not_ready_then_stops(start_server, cert_files):
    server = start_server("--shutdown-delay-seconds", str(DELAY), tls=cert_files)
    kept = server.connection()  # a keep-alive connection the API server already holds
    server.mutate(review(labelled_pod("-1")), conn=kept)
    signalled = time.monotonic()
    server.terminate()
    status, _, body = server.request("GET", "/readyz")
    assert status == 503 and b"shutting down" in body
    assert server.request("GET", "/healthz")[0] == 200
    # Still answering, on the connection it had and on new ones; each answer closes its connection
    # so the client's next call goes to a replica that stays.
    answered = 0
    while time.monotonic() - signalled < DELAY - 2.5:
        for conn in (kept, None):
            status, headers, raw = server.request("POST", "/mutate", orjson.dumps(review(labelled_pod("-3"))),
                                                  {"Content-Type": "application/json"}, conn=conn)
            assert status == 200 and headers.get("Connection") == "close"
            assert decoded_patch(orjson.loads(raw)) == [deletion_cost_op("-3")]
            answered += 1
            if conn is kept:  # the server closed it: the client opens another, as Go's would
                kept.close()
                kept = server.connection()
        time.sleep(0.2)
    assert answered >= 4 and not server.refuses_connections()
    # Then the port closes and the process exits 0 within the grace period.
    deadline = signalled + DELAY + 15
    while not server.refuses_connections():
        assert time.monotonic() < deadline, "still accepting connections after the shutdown delay"
        time.sleep(0.05)
    assert time.monotonic() - signalled >= DELAY - 0.5
    assert server.proc.wait(max(1.0, deadline - time.monotonic())) == 0


def test_sigint_or_a_second_sigterm_skips_the_delay(start_server, cert_files):
    for signals in ([signal.SIGINT], [signal.SIGTERM, signal.SIGTERM]):
        server = start_server("--shutdown-delay-seconds", "600", tls=cert_files)
        for sig in signals:
            server.proc.send_signal(sig)
            time.sleep(0.3)
        # Far sooner than the 600 s delay: the drain's own grace period at most.
        assert server.proc.wait(60) == 0


def test_the_delay_is_refused_when_negative(start_server):
    server = start_server("--shutdown-delay-seconds", "-1", wait=False)
    assert server.proc.wait(30) == 2
    assert "--shutdown-delay-seconds: must be a number of seconds, 0 or more" in server.output()
