"""Admissions answered on the event-loop thread when every mutator is nonblocking, and moved to a
worker thread, started again, whenever one has to wait (framework/event_loop.py)."""

import base64
import email.utils
import http.client
import http.server
import logging
import socket
import threading
import time

import jsonpatch
import orjson
import pytest
from kubernetes import client as k8s_client

from framework import KubeClient, Mutator, leave_event_loop
from framework.config import Config
from framework.host import Host
from framework.testing import pod, review
from framework.web.serve import Server

from tests.unit.helpers import make_plugin


def serve(*mutators):
    plugin = make_plugin("loop", admission_host_mutators=lambda: list(mutators))
    config = Config(enabled_plugins=[], bind_address="127.0.0.1", port=0, insecure_http=True, threads=2,
                    max_body_bytes=3 * 1024 * 1024)
    server = Server(Host(config, extra_plugins=[plugin]), config)
    thread = threading.Thread(target=server.run, name="event-loop", daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def served():
    running = []

    def start(*mutators):
        server, thread = serve(*mutators)
        running.append((server, thread))
        return server
    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(10)


def post(server, body: bytes) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
    answer = orjson.loads(conn.getresponse().read())["response"]
    conn.close()
    return answer


def annotations_of(answer, sent: dict) -> dict:
    """The sent pod's annotations once the answer's patch is applied."""
    patched = jsonpatch.apply_patch(sent["request"]["object"], orjson.loads(base64.b64decode(answer["patch"])))
    return patched["metadata"].get("annotations") or {}


def admit(server, obj: dict) -> dict:
    sent = review(obj)
    answer = post(server, orjson.dumps(sent))
    assert answer["uid"] == sent["request"]["uid"]
    return annotations_of(answer, sent)


def recorder(threads, key, **kw):
    def mutate(req):
        threads.append(threading.current_thread().name)
        req.object["metadata"].setdefault("annotations", {})[key] = "yes"
    return Mutator(name=key, mutate=mutate, paths=("metadata.annotations",), **kw)


def test_nonblocking_mutators_run_on_the_event_loop_thread(served):
    threads = []
    server = served(recorder(threads, "a", nonblocking=True), recorder(threads, "b", nonblocking=True))
    for i in range(3):
        assert admit(server, pod(f"p{i}")) == {"a": "yes", "b": "yes"}
    assert threads == ["event-loop"] * 6
    assert server.host.metrics.event_loop_handoffs._value.get() == 0


def test_one_mutator_that_may_block_keeps_every_admission_on_worker_threads(served):
    threads = []
    server = served(recorder(threads, "a", nonblocking=True), recorder(threads, "b", inline=True))
    assert admit(server, pod("p")) == {"a": "yes", "b": "yes"}
    assert len(threads) == 2 and "event-loop" not in threads, threads


def test_a_mutator_that_must_wait_starts_the_request_again_on_a_worker_thread(served):
    threads = []

    def waits(req):
        threads.append(threading.current_thread().name)
        leave_event_loop("a test that waits")
        req.object["metadata"].setdefault("annotations", {})["waited"] = "yes"

    server = served(recorder(threads, "a", order=1, nonblocking=True),
                    Mutator(name="waits", mutate=waits, order=2, nonblocking=True))
    # A body large enough for waitress to keep it in a file, not in memory: rewound all the same.
    assert admit(server, pod("big", annotations={"filler": "x" * (600 * 1024)})) == {"filler": "x" * (600 * 1024), "a": "yes", "waited": "yes"}
    # First attempt on the loop (a, then waits leaves), then everything again on a worker.
    assert threads[:2] == ["event-loop", "event-loop"] and len(threads) == 4, threads
    assert "event-loop" not in threads[2:]
    assert server.host.metrics.event_loop_handoffs._value.get() == 1
    # Nothing stuck: the next one is answered as well, and the handoffs are exposed.
    assert admit(server, pod("next"))["waited"] == "yes"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/metrics")
    assert "admission_host_event_loop_handoffs_total 2.0" in conn.getresponse().read().decode()


def test_a_nonblocking_mutator_that_blocks_shows_in_the_metrics_and_the_log(served, caplog):
    def blocks(req):  # a call it should have left the event loop for first
        time.sleep(0.05)
        req.object["metadata"].setdefault("annotations", {})["blocked"] = "yes"

    server = served(recorder([], "a", nonblocking=True), Mutator(name="blocks", mutate=blocks, nonblocking=True))
    with caplog.at_level(logging.WARNING, logger="admission_host.admission"):
        for i in range(2):
            assert admit(server, pod(f"p{i}")) == {"a": "yes", "blocked": "yes"}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    conn.close()
    assert 'admission_host_event_loop_mutator_duration_seconds_count{mutator="blocks",plugin="loop"} 2.0' in metrics
    assert 'admission_host_event_loop_mutator_duration_seconds_bucket{le="0.025",mutator="blocks",plugin="loop"} 0.0' \
        in metrics
    # Said once, not on every request.
    said = [r.getMessage() for r in caplog.records if "mutator 'blocks' held the event-loop thread" in r.getMessage()]
    assert len(said) == 1 and "should not be declared nonblocking" in said[0], said


class _Namespaces(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = orjson.dumps({"kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "blue"}}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_hosts_kubeclient_leaves_the_event_loop_by_itself(served):
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Namespaces)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    configuration = k8s_client.Configuration(host=f"http://127.0.0.1:{api.server_address[1]}")
    kube = KubeClient(configuration)
    threads = []

    def labels_from_api(req):  # a cache miss: one GET
        threads.append(threading.current_thread().name)
        ns = kube.get("/api/v1/namespaces/shop", timeout=req.time_left())
        req.object["metadata"].setdefault("annotations", {})["team"] = ns["metadata"]["labels"]["team"]

    try:
        server = served(Mutator(name="ns", mutate=labels_from_api, nonblocking=True))
        assert admit(server, pod("p")) == {"team": "blue"}
        assert threads[0] == "event-loop" and len(threads) == 2 and threads[1] != "event-loop"
        assert server.host.metrics.event_loop_handoffs._value.get() == 1
    finally:
        api.shutdown()


def test_pipelined_requests_are_answered_in_order(served):
    threads = []
    server = served(recorder(threads, "a", nonblocking=True))
    bodies = [orjson.dumps(review(pod(f"p{i}"))) for i in range(3)]
    raw = b"".join(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)  # three requests in one write
        reader = sock.makefile("rb")
        names = []
        for _ in bodies:
            status = reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while True:
                line = reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            names.append(orjson.loads(reader.read(length))["response"]["uid"])
    assert names == [orjson.loads(b)["request"]["uid"] for b in bodies]
    assert threads == ["event-loop"] * 3


def test_an_answer_is_written_in_one_piece(served, monkeypatch):
    """Header and body in one write: over TLS one record and one system call, not two; the Date
    header (formatted once a second) is there."""
    from framework.web.guard import GuardedChannel

    writes = []
    original = GuardedChannel.write_soon

    def write_soon(self, data):
        writes.append(bytes(data))
        return original(self, data)

    monkeypatch.setattr(GuardedChannel, "write_soon", write_soon)
    server = served(recorder([], "a", nonblocking=True))
    assert admit(server, pod("p")) == {"a": "yes"}
    (written,) = writes
    head, _, body = written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and orjson.loads(body)["response"]["allowed"] is True
    date = next(line.split(b": ", 1)[1] for line in head.split(b"\r\n") if line.startswith(b"Date: "))
    assert abs(email.utils.parsedate_to_datetime(date.decode()).timestamp() - time.time()) < 5


def trigger_pulls(server) -> list:
    """Counts the event loop's wake-ups (a byte down waitress's trigger pipe) from here on."""
    pulls = []
    wake = server.server.trigger.pull_trigger
    server.server.trigger.pull_trigger = lambda *a: (pulls.append(threading.current_thread().name), wake(*a))
    return pulls


def test_answers_on_the_event_loop_do_not_wake_it_and_answers_from_workers_do(served):
    """The loop's own answers need no wake-up (its next turn sees every channel); a worker's
    answer does, or it would wait for the loop's poll to time out (a second)."""
    server = served(recorder([], "a", nonblocking=True))
    pulls = trigger_pulls(server)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for i in range(5):
        conn.request("POST", "/mutate", body=orjson.dumps(review(pod(f"p{i}"))),
                     headers={"Content-Type": "application/json"})
        assert orjson.loads(conn.getresponse().read())["response"]["allowed"] is True
    conn.close()
    assert "event-loop" not in pulls, pulls

    blocking = served(recorder([], "b", inline=True))
    pulls = trigger_pulls(blocking)
    # On one kept-alive connection: without the wake-up the loop would read each next request only
    # when its poll times out, about 1 s each (9 s for these ten, measured).
    conn = http.client.HTTPConnection("127.0.0.1", blocking.port, timeout=10)
    started = time.monotonic()
    for i in range(10):
        sent = review(pod(f"q{i}"))
        conn.request("POST", "/mutate", body=orjson.dumps(sent), headers={"Content-Type": "application/json"})
        assert annotations_of(orjson.loads(conn.getresponse().read())["response"], sent) == {"b": "yes"}
    took = time.monotonic() - started
    conn.close()
    assert took < 5.0 and pulls, (took, pulls)
