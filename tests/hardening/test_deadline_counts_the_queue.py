"""The deadline counts from when a request arrived, so time spent waiting for a free thread counts."""

import http.client
import threading
import time

import orjson

from framework import Mutator
from framework.config import Config
from framework.host import Host
from framework.testing import pod, review
from framework.web.serve import Server

from tests.unit.helpers import make_plugin

DEADLINE = 3.0
QUEUED = 2.0  # how long the second request waits for the only thread
SLOW = 2.9  # the second one's mutator: inside the deadline counted from when a thread took it, not from arrival


def test_a_request_that_waited_for_a_thread_gets_only_what_is_left():
    first_running, release_first = threading.Event(), threading.Event()

    def slow(req):
        if req.name == "first":
            first_running.set()
            release_first.wait(30)
        else:
            time.sleep(SLOW)
        req.object["metadata"].setdefault("annotations", {})["slow"] = "done"

    # (its budget is the whole deadline: only the deadline is tested here)
    plugin = make_plugin("slowpoke", admission_host_mutators=lambda: [Mutator(name="slow", mutate=slow,
                                                                              budget_seconds=DEADLINE)])
    config = Config(enabled_plugins=[], bind_address="127.0.0.1", port=0, insecure_http=True, threads=1,
                    admission_deadline_seconds=DEADLINE)
    server = Server(Host(config, extra_plugins=[plugin]), config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        answers = {}

        def send(name):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            started = time.monotonic()
            conn.request("POST", "/mutate", body=orjson.dumps(review(pod(name))),
                         headers={"Content-Type": "application/json"})
            answers[name] = (orjson.loads(conn.getresponse().read())["response"], time.monotonic() - started)
            conn.close()

        first = threading.Thread(target=send, args=("first",))
        first.start()
        assert first_running.wait(10)  # the only thread is busy with the first one now
        second = threading.Thread(target=send, args=("second",))
        second.start()
        time.sleep(QUEUED)
        release_first.set()
        first.join(30)
        second.join(30)
        assert "patch" in answers["first"][0]  # about 2 s of its 3
        answer, elapsed = answers["second"]
        # With 1 s left when the thread took it, its 2.9 s mutator is late: the answer comes at the
        # deadline counted from its arrival (3 s), not 2.9 s after the thread took it (4.9 s).
        assert "patch" not in answer and any("did not finish" in w for w in answer["warnings"]), answer
        assert elapsed < 4.0, elapsed
    finally:
        release_first.set()
        server.shutdown()
        thread.join(10)
