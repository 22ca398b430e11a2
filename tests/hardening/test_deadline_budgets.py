"""Through HTTP: a plugin that hangs costs its own budget, not every plugin's work after it."""

import base64
import http.client
import logging
import threading
import time

import jsonpatch
import orjson

from framework import Mutator
from framework.config import Config
from framework.host import Host
from framework.testing import pod, review
from framework.web.serve import Server

from tests.unit.helpers import make_plugin


def labeller(key, order):
    def mutate(req):
        req.object["metadata"].setdefault("labels", {})[key] = "yes"
    return Mutator(name=key, mutate=mutate, order=order)


def test_three_plugins_the_first_hangs_past_its_budget_and_the_other_two_are_in_the_patch(caplog):
    release = threading.Event()

    def hangs(req):
        release.wait(30)
        req.object["metadata"].setdefault("labels", {})["hung"] = "yes"

    plugins = [make_plugin("one", admission_host_mutators=lambda: [Mutator(name="hangs", mutate=hangs, order=1)]),
               make_plugin("two", admission_host_mutators=lambda: [labeller("second", 2)]),
               make_plugin("three", admission_host_mutators=lambda: [labeller("third", 3)])]
    # No budget declared: the host's default (the config's) applies, well inside the deadline.
    config = Config(enabled_plugins=[], bind_address="127.0.0.1", port=0, insecure_http=True, threads=2,
                    admission_deadline_seconds=4.0, mutator_budget_seconds=0.5)
    server = Server(Host(config, extra_plugins=plugins), config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        sent = review(pod("p"))
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="admission_host.admission"):
            conn.request("POST", "/mutate", body=orjson.dumps(sent), headers={"Content-Type": "application/json"})
            answer = orjson.loads(conn.getresponse().read())["response"]
        elapsed = time.monotonic() - started
        release.set()  # (the abandoned mutator writes now: into nothing anyone reads)
        patched = jsonpatch.apply_patch(sent["request"]["object"], orjson.loads(base64.b64decode(answer["patch"])))
        assert patched["metadata"]["labels"] == {"second": "yes", "third": "yes"}
        assert answer["warnings"] == ["plugin 'one' mutator 'hangs' did not finish within its budget of 0.5 s; "
                                      "its changes are dropped"]
        assert elapsed < 3.0, elapsed  # at its budget, not the 4 s deadline
        assert any("mutator 'hangs' did not finish within its budget of 0.5 s" in r.getMessage()
                   for r in caplog.records if r.levelno == logging.WARNING)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        assert ('admission_host_mutator_calls_total{mutator="hangs",outcome="over_budget",plugin="one"} 1.0'
                in metrics)
        conn.close()
    finally:
        release.set()
        server.shutdown()
        thread.join(10)
