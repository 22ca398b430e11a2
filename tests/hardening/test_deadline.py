"""One deadline per request: answered in time with the work of the mutators that finished.

Nothing is forced into a running thread, so a late mutator can never leave a lock held: the last
test makes many mutators late while they log and read a cache, then checks that the process still
logs, reads and writes its cache, and answers.
"""

import base64
import logging
import random
import threading
import time

import orjson
import pytest

from framework import FAIL, Mutator
from framework.admission.pipeline import Pipeline
from framework.kube.store import Store
from framework.testing import pod, review


def annotate(key):
    def mutate(req):
        req.object["metadata"].setdefault("annotations", {})[key] = "yes"
    return mutate


def sleeps(seconds, key):
    def mutate(req):
        time.sleep(seconds)
        req.object["metadata"].setdefault("annotations", {})[key] = "late"
    return mutate


def waits_for(answered, key):
    """A mutator late by construction: it returns once the test has its answer (or after 30 s,
    which a pipeline that waited for it would take)."""
    def mutate(req):
        answered.wait(30)
        req.object["metadata"].setdefault("annotations", {})[key] = "late"
    return mutate


def call(pipeline, name="p", timeout=None):
    started = time.monotonic()
    answer = orjson.loads(pipeline.handle(orjson.dumps(review(pod(name))), timeout=timeout))["response"]
    return answer, time.monotonic() - started


def patch_of(answer):
    return orjson.loads(base64.b64decode(answer["patch"])) if "patch" in answer else []


def paths(answer):
    return sorted(op["path"] for op in patch_of(answer))


def test_two_slow_mutators_cost_only_their_own_changes():
    """The case that lost everything: two slow mutators in one request, past the webhook timeout."""
    answered = threading.Event()
    pipeline = Pipeline([Mutator(name="first", mutate=annotate("first"), order=1),
                         Mutator(name="slow-a", mutate=sleeps(0.3, "slow-a"), order=2),
                         Mutator(name="slow-b", mutate=waits_for(answered, "slow-b"), order=3),
                         Mutator(name="last", mutate=annotate("last"), order=4)], deadline=1.0)
    try:
        answer, elapsed = call(pipeline)
    finally:
        answered.set()
    # At the 1 s deadline; waiting for slow-b would take 30 s.
    assert elapsed < 10, elapsed
    assert answer["allowed"]
    assert paths(answer) == ["/metadata/annotations"]
    # first and slow-a finished in time; slow-b was late, last never ran
    patch = patch_of(answer)
    assert patch[0]["value"] == {"first": "yes", "slow-a": "late"}
    assert any("'slow-b' did not finish before the request's deadline" in w for w in answer["warnings"])
    assert any("last did not run" in w for w in answer["warnings"])


def test_a_mutator_that_does_not_return_does_not_hold_the_answer():
    release = threading.Event()

    def spin(req):
        while not release.is_set():  # a plugin bug: a busy loop (ended after the test, not to slow the others)
            pass

    pipeline = Pipeline([Mutator(name="a", mutate=annotate("a"), order=1), Mutator(name="spins", mutate=spin, order=2)],
                        deadline=0.3)
    # Were the answer held, it would come when this ends the loops: 30 s.
    timer = threading.Timer(30, release.set)
    timer.start()
    try:
        for _ in range(3):
            answer, elapsed = call(pipeline)
            # (the busy loops share the GIL with the answer: near the deadline, not at it)
            assert elapsed < 10 and answer["allowed"] and paths(answer) == ["/metadata/annotations"], elapsed
        assert pipeline.metrics.mutator_calls.labels("", "spins", "late")._value.get() == 3
        assert pipeline.runner.threads == 3  # each stuck call kept its thread; new calls got new ones
    finally:
        release.set()
        timer.cancel()


@pytest.mark.parametrize("which", ["late", "unrun"])
def test_fail_policy_of_a_late_or_unrun_mutator_denies(which):
    answered = threading.Event()
    mutators = [Mutator(name="slow", mutate=waits_for(answered, "slow"), order=1,
                        failure_policy=FAIL if which == "late" else "Ignore"),
                Mutator(name="deny-list", mutate=annotate("checked"), order=2,
                        failure_policy=FAIL if which == "unrun" else "Ignore")]
    try:
        answer, _ = call(Pipeline(mutators, deadline=0.2))
    finally:
        answered.set()
    assert not answer["allowed"]
    assert answer["status"]["code"] == 500
    assert ("'slow' did not finish" if which == "late" else "'deny-list' did not run") in answer["status"]["message"]


def test_edits_after_the_deadline_never_reach_an_answer():
    """The late mutator keeps editing the object it was given after the request was answered."""
    answered, done = threading.Event(), threading.Event()

    def late_writer(req):
        answered.wait(30)
        for i in range(100):
            req.object["metadata"].setdefault("annotations", {})[f"late-{i}"] = "x"
            req.warn("late warning")
        done.set()

    pipeline = Pipeline([Mutator(name="early", mutate=annotate("early"), order=1),
                         Mutator(name="late", mutate=late_writer, order=2)], deadline=0.15)
    try:
        answer, _ = call(pipeline)
    finally:
        answered.set()
    assert done.wait(10)
    patch = patch_of(answer)
    assert patch == [{"op": "add", "path": "/metadata/annotations", "value": {"early": "yes"}}]
    assert "late warning" not in answer["warnings"]


def test_inline_mutator_that_overruns_is_dropped_when_it_returns():
    # Late by construction (it sleeps past the deadline); "ok" has half a second.
    pipeline = Pipeline([Mutator(name="ok", mutate=annotate("ok"), order=1, inline=True),
                         Mutator(name="slow", mutate=sleeps(0.6, "slow"), order=2, inline=True)], deadline=0.5)
    answer, _ = call(pipeline)
    patch = patch_of(answer)
    assert patch[0]["value"] == {"ok": "yes"}
    assert any("'slow' did not finish" in w for w in answer["warnings"])


def test_the_api_servers_timeout_bounds_the_deadline_and_mutators_see_it():
    seen = []
    # Long times, so that a stall before the mutator reads its time left is a small part of them
    # (and a budget longer than them all, so that the deadline is what it sees).
    pipeline = Pipeline([Mutator(name="reads", mutate=lambda req: seen.append(req.time_left()), budget_seconds=60.0)],
                        deadline=40.0)
    call(pipeline, timeout=10.0)
    call(pipeline)
    assert 7.0 < seen[0] <= 8.0  # 80 % of the API server's 10 s
    assert 37.0 < seen[1] <= 40.0


def test_declared_paths_late_answer_is_built_from_what_finished():
    pipeline = Pipeline([Mutator(name="labels", mutate=lambda r: r.object["metadata"].setdefault("labels", {})
                                 .update(a="1"), order=1, paths=("metadata.labels",)),
                         Mutator(name="slow", mutate=sleeps(0.6, "x"), order=2, paths=("metadata.annotations",))],
                        deadline=0.5)
    answer, _ = call(pipeline)
    patch = patch_of(answer)
    assert patch == [{"op": "add", "path": "/metadata/labels", "value": {"a": "1"}}]


def test_many_late_mutators_that_log_and_read_caches_leave_the_process_whole(caplog):
    """Mutators made late over and over, mid-log and mid-lookup: nothing stays locked."""
    store = Store("things", indexers={"by-app": lambda o: [o["metadata"]["labels"]["app"]]})
    store.replace([{"metadata": {"name": f"t{i}", "labels": {"app": str(i % 7)}}} for i in range(200)])
    chatty = logging.getLogger("test.chatty")

    def busy(req):
        end = time.monotonic() + random.uniform(0.0, 0.08)
        while time.monotonic() < end:  # late about half the time
            chatty.warning("reading %d", len(store.by_index("by-app", str(random.randrange(7)))))
            store.list()
        req.object["metadata"].setdefault("annotations", {})["busy"] = "done"

    pipeline = Pipeline([Mutator(name="busy", mutate=busy)], deadline=0.04)
    results = []

    def client(n):
        for i in range(25):
            answer, elapsed = call(pipeline, name=f"p{n}-{i}")
            results.append((answer["allowed"], elapsed, "patch" in answer))

    with caplog.at_level(logging.WARNING):
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    late = pipeline.metrics.mutator_calls.labels("", "busy", "late")._value.get()
    assert len(results) == 200 and all(allowed for allowed, _, _ in results)
    assert 20 < late < 190, late  # both outcomes happened many times
    time.sleep(0.2)  # the late ones finish on their own
    # Every lock is free: logging, the store's, and new requests are answered at once.
    acquired = logging._lock.acquire(timeout=1)
    assert acquired
    logging._lock.release()
    store.upsert({"metadata": {"name": "new", "labels": {"app": "1"}}})
    assert store.get_by_name("new") is not None
    answer, elapsed = call(Pipeline([Mutator(name="a", mutate=annotate("a"))]))
    assert answer["patch"] and elapsed < 2.0, elapsed  # a mutator held up by a lock: no patch, at the 4 s deadline
