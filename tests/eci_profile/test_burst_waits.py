"""Pods waiting to burst: looked at once per trigger or due time, never in a loop, and told why once."""

import threading
import time

from framework import ApiError
from framework.testing import pod
from plugins.eci_profile import plugin as eci
from plugins.eci_profile.burst import BurstController
from plugins.eci_profile.cap import SELECTOR_LABEL
from plugins.eci_profile.profile import PENDING_PODS

from .conftest import TOLERATION, RecordingKube, default_objects, selector

T0 = 1_800_000_000.0


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def waiting_pod(name="web", rv="5"):
    p = pod(name, labels={"app": "nginx"})
    p["metadata"].update(resourceVersion=rv, uid=f"uid-{name}")
    p["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "lastTransitionTime": "2027-01-15T08:00:00Z"}]}
    return p


def on_virtual(name):
    p = pod(name, labels={"app": "nginx", SELECTOR_LABEL: "capped"})
    p["metadata"]["uid"] = f"uid-{name}"
    p["spec"]["nodeName"] = "vk-1"
    p["status"] = {"phase": "Running"}
    return p


def capped_controller(make_harness, kube, clock):
    sel = selector("capped", "normalNodePrefer", object_labels={"matchLabels": {"app": "nginx"}})
    sel["spec"]["maxVirtualPods"] = 1
    harness = make_harness(sel, objects=default_objects() + [on_virtual("v1"), waiting_pod()], kube=kube)
    return harness, BurstController(eci.profile_of(harness.host), clock=clock)


def capped_with_waiting(make_harness, kube, clock, cap: int, waiting: int):
    """A Selector capped at ``cap`` with one place taken, and ``waiting`` Unschedulable pods w0, w1, ..."""
    sel = selector("capped", "normalNodePrefer", object_labels={"matchLabels": {"app": "nginx"}})
    sel["spec"]["maxVirtualPods"] = cap
    harness = make_harness(sel, objects=default_objects() + [on_virtual("v1")] + [
        waiting_pod(f"w{i}") for i in range(waiting)], kube=kube)
    return harness, BurstController(eci.profile_of(harness.host), clock=clock)


def burst_delayed(kube, deadline=10.0):
    """The BurstDelayed Events posted, once the poster thread has had its chance."""
    end = time.monotonic() + deadline
    while time.monotonic() < end and not kube.writes("POST"):
        time.sleep(0.01)
    time.sleep(0.2)
    return [body for _, _, body in kube.writes("POST") if body["reason"] == "BurstDelayed"]


def test_a_pod_held_at_the_cap_is_told_once_however_often_it_is_looked_at(make_harness):
    kube, clock = RecordingKube(), Clock()
    _, controller = capped_controller(make_harness, kube, clock)
    for _ in range(20):  # every second for 20 s: a trigger each time
        controller.reconcile("default/web")
        clock.now += 1
    events = burst_delayed(kube)
    assert len(events) == 1 and "maxVirtualPods 1 reached" in events[0]["message"]
    assert kube.writes() == [] and controller.waiting_count("capped") == 1
    # One look scheduled, however many looks there were.
    assert controller.queue.waiting() == 1


def test_a_status_write_that_changes_nothing_cached_does_not_trigger_a_look(make_harness):
    kube, clock = RecordingKube(), Clock()
    harness, controller = capped_controller(make_harness, kube, clock)
    controller.active = True
    store = harness.store(PENDING_PODS)
    cached = store.get("default/web")
    # A new resourceVersion only (e.g. the scheduler's lastProbeTime, which the cache does not keep).
    store.upsert({**cached, "metadata": {**cached["metadata"], "resourceVersion": "6"}})
    assert len(controller.queue) == 0
    store.upsert({**cached, "metadata": {**cached["metadata"], "resourceVersion": "7",
                                         "labels": {"app": "nginx", "tier": "web"}}})
    assert len(controller.queue) == 1


def untried_pod(name, created):
    p = pod(name, labels={"app": "nginx"})
    p["metadata"].update(resourceVersion="5", uid=f"uid-{name}", creationTimestamp=created)
    p["status"] = {"phase": "Pending"}  # no PodScheduled condition: its write was lost
    return p


def failed_scheduling(name, at):
    return {"metadata": {"creationTimestamp": at}, "reason": "FailedScheduling", "firstTimestamp": at,
            "involvedObject": {"kind": "Pod", "name": name, "uid": f"uid-{name}"},
            "message": "0/3 nodes are available: 2 Insufficient cpu."}


def test_a_pod_the_scheduler_tried_without_writing_its_condition_bursts_from_the_resync(make_harness):
    # T0 + 60 s now: "lost" was created at T0 and failed at T0 + 1; "young" was created 10 s ago.
    events = {"/api/v1/namespaces/default/events": {"items": [failed_scheduling("lost", "2027-01-15T08:00:01Z"),
                                                               failed_scheduling("other", "2027-01-15T08:00:01Z")]}}
    kube, clock = RecordingKube(events), Clock()
    clock.now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    sel = selector("prefer", "normalNodePrefer", object_labels={"matchLabels": {"app": "nginx"}})
    objects = default_objects() + [untried_pod("lost", "2027-01-15T08:00:00Z"),
                                   untried_pod("young", "2027-01-15T08:00:50Z")]
    harness = make_harness(sel, objects=objects, kube=kube)
    controller = BurstController(eci.profile_of(harness.host), clock=clock)
    clock.now += 60
    controller.reconcile("default/lost")  # the watch alone says nothing: no condition, no burst
    assert kube.writes() == []
    controller.resync()
    assert controller.queue.has("default/lost") and not controller.queue.has("default/young")
    assert controller.failed_scheduling == {"default/lost": clock.now - 59}
    controller.reconcile("default/lost")
    (_, path, body), = kube.writes()
    assert path == "/api/v1/namespaces/default/pods/lost" and body[-1]["value"] == [TOLERATION]


def test_the_resync_gives_a_look_to_unschedulable_pods_not_in_the_queue_only(make_harness):
    kube, clock = RecordingKube(), Clock()
    _, controller = capped_controller(make_harness, kube, clock)
    controller.resync()  # lost: its watch event came while the controller could not act on it
    assert controller.queue.has("default/web")
    controller.queue._ready.clear()
    controller.reconcile("default/web")  # held at the cap: waits 30 s
    assert controller.queue.waiting() == 1
    controller.resync()
    assert len(controller.queue) == 0 and controller.queue.waiting() == 1  # its wait stands


def test_pods_tolerated_and_not_yet_bound_count_against_the_cap(make_harness):
    kube, clock = RecordingKube(), Clock()
    harness, controller = capped_with_waiting(make_harness, kube, clock, cap=3, waiting=5)
    for i in range(5):
        controller.reconcile(f"default/w{i}")
    # One place is taken: two more are tolerated at once, the others wait, though none is bound yet.
    assert [path.rsplit("/", 1)[1] for _, path, _ in kube.writes()] == ["w0", "w1"]
    assert controller.waiting_count("capped") == 3
    harness.store(PENDING_PODS).delete("default/w0")  # bound to a normal node after all
    controller.reconcile("default/w2")
    assert [path.rsplit("/", 1)[1] for _, path, _ in kube.writes()] == ["w0", "w1", "w2"]


def test_workers_reconciling_at_once_never_tolerate_past_the_cap(make_harness):
    class SlowKube(RecordingKube):
        def __init__(self):
            super().__init__()
            self.lock, self.in_flight, self.most = threading.Lock(), 0, 0

        def patch(self, path, body, content_type=None, timeout=None, **query):
            with self.lock:
                self.in_flight += 1
                self.most = max(self.most, self.in_flight)
            time.sleep(0.05)  # the API server's answer: the other workers go on meanwhile
            with self.lock:
                self.in_flight -= 1
            return super().patch(path, body, content_type, timeout, **query)

    kube, clock, stop = SlowKube(), Clock(), threading.Event()
    _, controller = capped_with_waiting(make_harness, kube, clock, cap=6, waiting=40)
    thread = threading.Thread(target=controller.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while controller.waiting_count("capped") < 35 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(30)
    # One place is taken: five pods are tolerated, by PATCHes under way at once, and 35 wait.
    assert len(kube.writes()) == 5 and kube.most > 1
    assert controller.waiting_count("capped") == 35


def test_a_look_on_a_stale_cache_keeps_the_place_an_earlier_look_took(make_harness):
    kube, clock = RecordingKube(), Clock()
    _, controller = capped_with_waiting(make_harness, kube, clock, cap=3, waiting=3)
    controller.reconcile("default/w0")  # tolerated: one of the two free places is w0's
    # Looked at again before the watch shows its tolerations: the PATCH is refused (its test of the
    # tolerations fails) and the pod as it is now says it has them. Its place stays taken.
    tolerated = waiting_pod("w0")
    tolerated["spec"]["tolerations"] = [TOLERATION]
    kube.objects["/api/v1/namespaces/default/pods/w0"] = tolerated
    kube.fail_patch = ApiError(422, "the test of /spec/tolerations failed")
    controller.reconcile("default/w0")
    controller.reconcile("default/w1")
    controller.reconcile("default/w2")
    patched = [path.rsplit("/", 1)[1] for _, path, _ in kube.writes()]
    assert patched == ["w0", "w0", "w1"], patched  # w2 waits: v1, w0 and w1 fill the cap of 3
    assert controller.waiting_count("capped") == 1
