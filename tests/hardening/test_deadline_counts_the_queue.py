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


def test_a_request_that_waited_for_a_thread_gets_only_what_is_left():
    def slow(req):
        time.sleep(0.4)
        req.object["metadata"].setdefault("annotations", {})["slow"] = "done"

    plugin = make_plugin("slowpoke", admission_host_mutators=lambda: [Mutator(name="slow", mutate=slow)])
    config = Config(enabled_plugins=[], bind_address="127.0.0.1", port=0, insecure_http=True, threads=1,
                    admission_deadline_seconds=0.6)
    server = Server(Host(config, extra_plugins=[plugin]), config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        answers = {}

        def send(name):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            started = time.monotonic()
            conn.request("POST", "/mutate", body=orjson.dumps(review(pod(name))),
                         headers={"Content-Type": "application/json"})
            answers[name] = (orjson.loads(conn.getresponse().read())["response"], time.monotonic() - started)
            conn.close()

        first = threading.Thread(target=send, args=("first",))
        first.start()
        time.sleep(0.05)  # the only thread is busy with the first one now
        send("second")
        first.join(10)
        assert "patch" in answers["first"][0]  # 0.4 s of its 0.6
        second, elapsed = answers["second"]
        # It waited ~0.35 s for the thread: with 0.25 s left its 0.4 s mutator is late, and the
        # answer comes at its deadline, not 0.6 s after the thread took it.
        assert "patch" not in second and any("did not finish" in w for w in second["warnings"]), second
        assert elapsed < 0.9, elapsed
    finally:
        server.shutdown()
        thread.join(10)
