"""WorkQueue: keys deduplicated, one waiting entry per key, failed keys retried with back-off,
handled in the controller's thread, failures isolated, and its metrics."""

import threading
import time

from prometheus_client import generate_latest

from framework import WorkQueue
from framework.kube import workqueue
from framework.metrics import Metrics


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def due(queue):
    """The keys ready now, as ``run`` would take them."""
    with queue._cond:
        queue._take_due()
        ready, queue._ready = queue._ready, set()
    return sorted(ready)


def test_keys_added_twice_are_handled_once_and_failures_do_not_stop_others():
    queue, seen, errors, stop = WorkQueue("test"), [], [], threading.Event()

    def reconcile(key):
        seen.append(key)
        if key == "bad":
            raise RuntimeError("boom")

    queue.add(["b", "a", "bad", "a"])
    queue.add(["b"])
    thread = threading.Thread(target=queue.run, args=(stop, reconcile, errors.append))
    thread.start()
    deadline = time.monotonic() + 30
    while seen.count("bad") < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.add(["c"])
    while "c" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert seen[:3] == ["a", "b", "bad"] and seen.count("a") == seen.count("b") == seen.count("c") == 1
    # The failing key is retried (5 ms, 10 ms, ...) and reported each time; the others are not.
    assert seen.count("bad") >= 3 and set(errors) == {"bad"} and len(errors) == seen.count("bad")


def test_a_waiting_key_keeps_its_earliest_due_time_and_has_one_entry():
    clock = Clock()
    queue = WorkQueue("test", clock=clock)
    for _ in range(50):  # every extra trigger of old started a timer chain of its own
        queue.add_after("pod", 30)
        clock.now += 0.5
    assert queue.waiting() == 1 and due(queue) == []
    queue.add_after("pod", 2)  # an earlier time wins
    clock.now += 2
    assert due(queue) == ["pod"] and queue.waiting() == 0
    clock.now += 60
    assert due(queue) == []  # the superseded entries never fire
    assert queue._later == []


def test_adding_a_waiting_key_makes_it_ready_now_and_drops_its_wait():
    clock = Clock()
    queue = WorkQueue("test", clock=clock)
    queue.add_after("pod", 30)
    queue.add(["pod"])
    assert due(queue) == ["pod"] and queue.waiting() == 0
    clock.now += 31
    assert due(queue) == []
    queue.add(["pod"])
    queue.add_after("pod", 5)  # ready already: its reconcile decides afresh
    assert queue.waiting() == 0 and due(queue) == ["pod"]


def test_a_failing_key_is_retried_with_a_doubling_back_off_and_forgotten_on_success():
    clock = Clock()
    queue = WorkQueue("test", clock=clock)
    outcomes = iter([RuntimeError("503"), RuntimeError("503"), RuntimeError("503"), None, RuntimeError("again")])
    errors = []

    def reconcile(key):
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    handled = []
    for expected_delay in (0.005, 0.01, 0.02):
        queue._handle("pod", reconcile, errors.append)
        handled.append(queue.failures("pod"))
        clock.now += expected_delay * 0.99
        assert due(queue) == []
        clock.now += expected_delay * 0.02
        assert due(queue) == ["pod"]
    assert handled == [1, 2, 3] and errors == ["pod"] * 3
    queue._handle("pod", reconcile, errors.append)  # succeeds
    assert queue.failures("pod") == 0 and queue.waiting() == 0
    queue._handle("pod", reconcile, errors.append)  # a new failure starts from 5 ms again
    clock.now += 0.005
    assert due(queue) == ["pod"]


def test_the_back_off_doubles_from_5ms_to_1000s():
    delays = [workqueue.retry_delay(n) for n in range(1, 25)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert all(b == min(2 * a, 1000.0) for a, b in zip(delays, delays[1:]))
    assert delays[-1] == 1000.0 and workqueue.retry_delay(10_000) == 1000.0


def test_metrics_count_adds_retries_work_and_show_depth():
    metrics, clock = Metrics(), Clock()
    queue = WorkQueue("burst", clock=clock, metrics=metrics)
    queue.add(["a", "b", "a"])
    queue.add_after("c", 10)

    def reconcile(key):
        clock.now += 2.0
        if key == "b":
            raise RuntimeError("boom")

    text = generate_latest(metrics.registry).decode()
    assert 'admission_host_workqueue_depth{name="burst"} 2.0' in text
    assert 'admission_host_workqueue_waiting{name="burst"} 1.0' in text
    for key in due(queue):
        queue._handle(key, reconcile, lambda key: None)
    text = generate_latest(metrics.registry).decode()
    assert 'admission_host_workqueue_adds_total{name="burst"} 2.0' in text
    assert 'admission_host_workqueue_retries_total{name="burst"} 1.0' in text
    assert 'admission_host_workqueue_work_duration_seconds_count{name="burst"} 2.0' in text
    assert 'admission_host_workqueue_work_duration_seconds_sum{name="burst"} 4.0' in text
    assert 'admission_host_workqueue_longest_running_processor_seconds{name="burst"} 0.0' in text


def test_the_longest_running_reconcile_shows_while_it_runs():
    clock = Clock()
    queue = WorkQueue("test", clock=clock)
    seen = []

    def reconcile(key):
        clock.now += 7
        seen.append(queue.longest_running())

    queue._handle("slow", reconcile, lambda key: None)
    assert seen == [7.0] and queue.longest_running() == 0.0


def test_several_workers_reconcile_at_once_but_never_one_key_twice_at_once():
    queue, stop, lock = WorkQueue("test"), threading.Event(), threading.Lock()
    running, most, handled = {}, {"all": 0, "one key": 0}, []
    together = threading.Barrier(4, timeout=10)

    def reconcile(key):
        with lock:
            running[key] = running.get(key, 0) + 1
            most["all"] = max(most["all"], sum(running.values()))
            most["one key"] = max(most["one key"], running[key])
        if key in ("a", "b", "c", "d"):
            together.wait()  # four reconciles under way at once, or this raises
        if key == "again" and handled.count("again") == 0:
            queue.add(["again"])  # added while it runs: handled afterwards, not alongside
            time.sleep(0.1)
        with lock:
            running[key] -= 1
            handled.append(key)

    queue.add(["a", "b", "c", "d", "again"])
    thread = threading.Thread(target=queue.run, args=(stop, reconcile), kwargs={"workers": 4})
    thread.start()
    deadline = time.monotonic() + 30
    while handled.count("again") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert sorted(handled) == ["a", "again", "again", "b", "c", "d"]
    assert most["all"] >= 4 and most["one key"] == 1
