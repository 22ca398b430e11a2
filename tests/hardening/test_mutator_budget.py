"""A mutator that hangs is interrupted within its budget; the request is answered without it."""

import threading
import time

import pytest

from framework import FAIL, Mutator
from framework.admission.pipeline import Pipeline
from framework.testing import pod, review

import orjson


def spin(req):
    while True:  # a plugin bug: a loop that never ends
        pass


def sleepy(req):
    for _ in range(1000):  # waits made of short sleeps (a poll loop)
        time.sleep(0.01)


def annotate(req):
    req.object["metadata"].setdefault("annotations", {})["ok"] = "yes"


def run(pipeline):
    answer = orjson.loads(pipeline.handle(orjson.dumps(review(pod("p")))))["response"]
    return answer


@pytest.mark.parametrize("hang", [spin, sleepy])
def test_hanging_mutator_is_interrupted_and_skipped(hang):
    pipeline = Pipeline([Mutator(name="hangs", mutate=hang, order=1), Mutator(name="annotates", mutate=annotate, order=2)],
                        mutator_timeout=0.3)
    started = time.monotonic()
    answer = run(pipeline)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed
    assert answer["allowed"] and answer["patch"]  # the other mutator's change is there
    assert any("hangs" in w and "time budget" in w for w in answer["warnings"])


def test_hanging_mutator_with_fail_policy_denies():
    pipeline = Pipeline([Mutator(name="hangs", mutate=spin, failure_policy=FAIL)], mutator_timeout=0.2)
    answer = run(pipeline)
    assert not answer["allowed"] and "time budget" in answer["status"]["message"]


def test_fast_mutators_are_never_interrupted_later():
    pipeline = Pipeline([Mutator(name="annotates", mutate=annotate)], mutator_timeout=0.05)
    for _ in range(200):
        assert run(pipeline)["patch"]
    time.sleep(0.2)  # a stray interrupt would land in this thread now
    assert threading.current_thread().is_alive()


def test_concurrent_requests_only_the_slow_one_is_interrupted():
    def maybe_hang(req):
        if req.object["metadata"]["name"] == "slow":
            spin(req)
        annotate(req)

    pipeline = Pipeline([Mutator(name="m", mutate=maybe_hang)], mutator_timeout=0.3)
    results = {}

    def go(name):
        results[name] = orjson.loads(pipeline.handle(orjson.dumps(review(pod(name)))))["response"]

    threads = [threading.Thread(target=go, args=(n,)) for n in ("slow", "a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert "patch" not in results["slow"] and results["slow"]["warnings"]
    assert all(results[n].get("patch") and not results[n].get("warnings") for n in "abc")
