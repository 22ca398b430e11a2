"""Drain-back offline: which pods go back, where they fit, the rate, one per workload, PDBs and
back-off, on a clock the test sets."""

import pytest

from framework import ApiError
from plugins.eci_profile.cap import SELECTOR_LABEL
from plugins.eci_profile.drain import DrainBackController, NodeUsage
from plugins.eci_profile.plugin import profile_of
from plugins.eci_profile.profile import strip_virtual_pod
from plugins.eci_profile.resources import requests_of
from plugins.eci_profile.timing import iso_time

from tests.unit.fakeapi import wait_for

from .conftest import VNODE, RecordingKube, selector

NOW = 1_800_000_000.0
STARTED = "2027-01-15T07:00:00Z"  # an hour before NOW


class EvictingKube(RecordingKube):
    def __init__(self, refuse=()):
        super().__init__()
        self.refuse = set(refuse)

    def post(self, path, body, timeout=None, **query):
        self.calls.append(("POST", path, body))
        if path.endswith("/eviction") and body["metadata"]["name"] in self.refuse:
            raise ApiError(429, "Cannot evict pod as it would violate the pod's disruption budget.")
        return {}

    def evicted(self):
        return [c[2]["metadata"]["name"] for c in self.writes("POST") if c[1].endswith("/eviction")]


def a_node(name, cpu="4", labels=None, taints=None, ready=True):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or []},
            "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def virtual_pod(name, owner="web", kind="ReplicaSet", cpu="1", started=STARTED, sel="back"):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "labels": {"app": "nginx", SELECTOR_LABEL: sel}, "creationTimestamp": started,
                         "ownerReferences": [{"kind": kind, "name": owner, "uid": f"owner-{owner}", "controller": True}]},
            "spec": {"nodeName": "vk-1", "containers": [{"name": "m", "image": "x",
                                                         "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
            "status": {"phase": "Running", "startTime": started}}


def back(after="10m", per_minute=5):
    s = selector("back", "normalNodePrefer", object_labels={"matchLabels": {"app": "nginx"}})
    s["spec"]["drainBack"] = {"after": after, "maxPerMinute": per_minute}
    return s


@pytest.fixture
def drain(make_harness):
    def make(pods, nodes=None, sel=None, kube=None, used=()):
        kube = kube or EvictingKube()
        objects = [a_node("vk-1", "100", VNODE)] + (nodes if nodes is not None else [a_node("normal-1")])
        harness = make_harness(sel or back(), objects=objects + pods, kube=kube)
        clock = [NOW]
        ctl = DrainBackController(profile_of(harness.host), clock=lambda: clock[0])
        ctl.usage = NodeUsage()
        ctl.usage.replace([{"k": f"default/used{i}", "n": n, "r": requests_of(
            {"containers": [{"resources": {"requests": {"cpu": c}}}]})} for i, (n, c) in enumerate(used)])
        return ctl, kube, clock
    return make


def test_pods_go_back_where_they_fit_at_the_rate_asked(drain):
    pods = [virtual_pod(f"p{i}", owner=f"w{i}") for i in range(4)]
    ctl, kube, clock = drain(pods, sel=back(per_minute=2), used=[("normal-1", "1")])
    assert ctl.step() == 2 and kube.evicted() == ["p0", "p1"]  # the rate: two a minute
    clock[0] += 30
    assert ctl.step() == 0
    clock[0] += 31  # the replacements run on normal-1 now; the room promised to them ran out
    for i in range(2):
        ctl.usage.upsert({"k": f"default/new{i}", "n": "normal-1", "r": (1000, 0)})
    # 4 CPUs, 1 used by another pod and 2 by the replacements: one more fits, not two.
    assert ctl.step() == 1 and kube.evicted()[2:] == ["p2"]
    clock[0] += 30
    assert ctl.step() == 0  # the rate allows one more, but p2's replacement has its room promised


def test_not_before_after_nor_without_a_workload_nor_where_it_does_not_fit(drain):
    pods = [virtual_pod("young", started="2027-01-15T07:55:00Z"), virtual_pod("bare", kind="Job", owner="j"),
            virtual_pod("big", owner="b", cpu="8")]
    tainted = a_node("normal-t", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    ctl, kube, _ = drain(pods, nodes=[tainted, a_node("normal-nr", ready=False)])
    assert ctl.step() == 0 and kube.evicted() == []


def test_one_pod_per_workload_at_a_time_and_back_off_when_the_replacement_is_virtual(drain):
    pods = [virtual_pod("a1", owner="a"), virtual_pod("a2", owner="a")]
    ctl, kube, clock = drain(pods)
    assert ctl.step() == 1 and kube.evicted() == ["a1"]
    clock[0] += 61
    assert ctl.step() == 0  # a1 is still there (terminating): a2 waits
    # a1 is gone and its replacement landed on a virtual node again.
    ctl.virtual.delete("default/a1")
    replacement = virtual_pod("a3", owner="a", started="2027-01-15T08:00:05Z")
    harness_store = ctl.virtual
    harness_store.upsert(profile_of_store_entry(ctl, replacement))
    clock[0] += 10
    assert ctl.step() == 0  # backing off that workload
    clock[0] += 601
    assert ctl.step() == 1


def profile_of_store_entry(ctl, pod):
    from plugins.eci_profile.profile import strip_virtual_pod

    return strip_virtual_pod(pod)


def test_a_disruption_budget_holds_a_pod_back(drain):
    kube = EvictingKube(refuse={"p0"})
    ctl, kube, _ = drain([virtual_pod("p0", owner="a"), virtual_pod("p1", owner="b")], kube=kube)
    assert ctl.step() == 1 and kube.evicted() == ["p0", "p1"]  # p0 tried and refused, p1 evicted
    assert ctl.drained.labels("back", "blocked")._value.get() == 1


def test_off_unless_a_selector_asks(drain):
    s = selector("back", "normalNodePrefer", object_labels={"matchLabels": {"app": "nginx"}})
    ctl, kube, _ = drain([virtual_pod("p0")], sel=s)
    assert ctl.step() == 0 and ctl.usage is None  # the running-pods cache is dropped


def test_a_workload_whose_replacements_keep_landing_on_virtual_nodes_is_left_alone_longer_each_time(drain):
    """5 minutes after the first relapse, doubling up to an hour."""
    ctl, kube, clock = drain([virtual_pod("a0", owner="a")], sel=back(after="10s"))
    assert ctl.step() == 1
    for n, backoff in enumerate([300, 600, 1200, 2400, 3600, 3600], start=1):
        evicted = clock[0]
        # The evicted pod is gone and its replacement landed on a virtual node again.
        ctl.virtual.delete(f"default/a{n - 1}")
        clock[0] = evicted + 20
        ctl.virtual.upsert(strip_virtual_pod(virtual_pod(f"a{n}", owner="a", started=iso_time(clock[0]))))
        assert ctl.step() == 0  # noticed: left alone from now
        noticed = clock[0]
        clock[0] = noticed + backoff - 1
        assert ctl.step() == 0, f"relapse {n}: evicted before {backoff} s"
        clock[0] = noticed + backoff
        assert ctl.step() == 1, f"relapse {n}: still left alone after {backoff} s"
    assert kube.evicted() == [f"a{n}" for n in range(7)]


def test_a_pod_drained_back_is_told_why_with_a_drain_back_event(drain):
    ctl, kube, _ = drain([virtual_pod("p0")])
    assert ctl.step() == 1
    event = wait_for(lambda: next((body for _, path, body in kube.writes("POST") if path.endswith("/events")), None))
    assert event["reason"] == "DrainBack" and event["type"] == "Normal"
    assert event["involvedObject"]["name"] == "p0" and event["involvedObject"]["uid"] == "uid-p0"
    assert "normal-1" in event["message"] and "Selector back" in event["message"]
