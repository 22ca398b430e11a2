"""Each mutator's budget within the request's deadline, and nonblocking mutators' time on the event loop."""

import logging
import threading
import time

import orjson
import pytest

from framework import FAIL, Mutator
from framework.admission.pipeline import Pipeline
from framework.config import ConfigError, load_mapping
from framework.event_loop import answering_on_event_loop
from framework.testing import Result, pod, review


def send(pipeline: Pipeline, sent: dict) -> Result:
    return Result(sent, orjson.loads(pipeline.handle(orjson.dumps(sent))))


def labeller(key, **kw):
    def mutate(req):
        req.object["metadata"].setdefault("labels", {})[key] = "yes"
    return Mutator(name=key, mutate=mutate, **kw)


def sample(pipeline, name, **labels):
    return pipeline.metrics.registry.get_sample_value(name, labels) or 0


def said(caplog, text):
    return [r for r in caplog.records if text in r.getMessage() and r.levelno == logging.WARNING]


@pytest.mark.parametrize("paths", [None, ("metadata.labels",)])
def test_a_mutator_past_its_budget_is_abandoned_and_the_mutators_after_it_still_run(paths, caplog):
    """Three plugins; the first hangs. Its budget ends it, not the request's 10 s deadline, and what
    it writes once abandoned never reaches the mutators after it nor the answer."""
    go, wrote, seen = threading.Event(), threading.Event(), []

    def hangs(req):
        go.wait(30)  # until the next mutator runs: it has been abandoned by then
        req.object["metadata"].setdefault("labels", {})["zombie"] = "yes"
        req.warn("zombie warning")
        req.audit("zombie", "yes")
        wrote.set()

    def second(req):
        go.set()
        wrote.wait(5)
        seen.append(dict(req.object["metadata"].get("labels") or {}))
        req.object["metadata"].setdefault("labels", {})["second"] = "yes"

    pipeline = Pipeline([Mutator("hangs", hangs, order=1, budget_seconds=0.2, paths=paths, plugin="one"),
                         Mutator("second", second, order=2, paths=paths, plugin="two"),
                         labeller("third", order=3, paths=paths, plugin="three")], deadline=10.0)
    pipeline.strict = True
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        result = send(pipeline, review(pod("p", labels={"app": "web"})))
    assert time.monotonic() - started < 5.0
    assert wrote.is_set() and seen == [{"app": "web"}]
    assert result.allowed
    assert result.object["metadata"]["labels"] == {"app": "web", "second": "yes", "third": "yes"}
    assert result.warnings == ["plugin 'one' mutator 'hangs' did not finish within its budget of 0.2 s; "
                               "its changes are dropped"]
    assert result.audit_annotations == {}
    assert sample(pipeline, "admission_host_mutator_calls_total", plugin="one", mutator="hangs",
                  outcome="over_budget") == 1
    assert sample(pipeline, "admission_host_mutator_calls_total", plugin="three", mutator="third", outcome="ok") == 1
    (line,) = said(caplog, "budget")
    assert "plugin 'one' mutator 'hangs' did not finish within its budget of 0.2 s" in line.getMessage()


def test_a_mutator_that_returns_past_its_budget_is_dropped_and_the_next_one_runs():
    """In the request's own thread (inline) nothing can abandon it: it is judged when it returns."""
    def slow(req):
        time.sleep(0.15)
        req.object["metadata"].setdefault("labels", {})["slow"] = "yes"
        req.warn("slow warning")

    pipeline = Pipeline([Mutator("slow", slow, order=1, inline=True, budget_seconds=0.05),
                         labeller("next", order=2, inline=True)])
    result = send(pipeline, review(pod("p")))
    assert result.allowed and result.object["metadata"]["labels"] == {"next": "yes"}
    assert result.warnings == ["mutator 'slow' did not finish within its budget of 0.05 s; its changes are dropped"]
    assert sample(pipeline, "admission_host_mutator_calls_total", plugin="", mutator="slow",
                  outcome="over_budget") == 1


def test_fail_policy_past_the_budget_denies_at_once():
    release = threading.Event()
    pipeline = Pipeline([labeller("first", order=1),
                         Mutator("hangs", lambda req: release.wait(30), order=2, budget_seconds=0.1,
                                 failure_policy=FAIL, plugin="guard"),
                         labeller("never", order=3)], deadline=10.0)
    started = time.monotonic()
    try:
        result = send(pipeline, review(pod("p")))
    finally:
        release.set()
    assert time.monotonic() - started < 5.0
    assert not result.allowed and result.patch == []
    assert result.status == {"code": 500, "message": "plugin 'guard' mutator 'hangs' did not finish within its "
                                                     "budget of 0.1 s (failure policy Fail)"}
    assert sample(pipeline, "admission_host_mutator_calls_total", plugin="", mutator="never", outcome="ok") == 0


def test_the_hosts_default_budget_applies_to_a_mutator_that_declares_none_and_time_left_tells_it():
    left = []

    def slow(req):
        left.append(req.time_left())
        time.sleep(0.3)
        req.object["metadata"].setdefault("labels", {})["slow"] = "yes"

    pipeline = Pipeline([Mutator("slow", slow, order=1), labeller("next", order=2)], deadline=10.0, budget=0.1)
    result = send(pipeline, review(pod("p")))
    assert result.object["metadata"]["labels"] == {"next": "yes"}
    assert 0 < left[0] <= 0.1
    # One that declares its own budget has it, and sees the deadline when that comes first.
    pipeline = Pipeline([Mutator("slow", slow, budget_seconds=60.0)], deadline=10.0, budget=0.1)
    assert send(pipeline, review(pod("p"))).object["metadata"]["labels"] == {"slow": "yes"}
    assert 9.0 < left[1] <= 10.0


@pytest.mark.parametrize("budget", [0, -1, True, "1", float("nan")])
def test_budget_seconds_is_a_positive_number(budget):
    with pytest.raises(ValueError, match="budget_seconds must be a number of seconds above 0"):
        Mutator("m", lambda req: None, budget_seconds=budget)


def test_the_default_budget_is_a_config_key():
    assert load_mapping({"mutatorBudgetSeconds": 0.5}).mutator_budget_seconds == 0.5
    assert load_mapping({}).mutator_budget_seconds == 2.0
    with pytest.raises(ConfigError, match="'mutatorBudgetSeconds' must be more than 0"):
        load_mapping({"mutatorBudgetSeconds": 0})
    with pytest.raises(ConfigError, match="'mutatorBudgetSeconds' must be a number"):
        load_mapping({"mutatorBudgetSeconds": "1s"})


def test_a_nonblocking_mutator_that_blocks_the_event_loop_is_measured_and_said_once_a_minute(caplog):
    def blocks(req):
        time.sleep(0.03)  # a call that should have left the event loop first

    pipeline = Pipeline([labeller("quick", nonblocking=True, plugin="fast"),
                         Mutator("blocks", blocks, nonblocking=True, plugin="slow")])
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            with answering_on_event_loop():
                assert send(pipeline, review(pod("p"))).allowed
        send(pipeline, review(pod("p")))  # on a worker thread: not event-loop time

    def seconds(suffix, plugin, mutator):
        return sample(pipeline, f"admission_host_event_loop_mutator_duration_seconds_{suffix}",
                      plugin=plugin, mutator=mutator)

    assert seconds("count", "slow", "blocks") == 3 and seconds("sum", "slow", "blocks") >= 0.09
    assert seconds("count", "fast", "quick") == 3
    (line,) = said(caplog, "plugin 'slow' mutator 'blocks' held the event-loop thread for ")
    assert "should not be declared nonblocking" in line.getMessage()
