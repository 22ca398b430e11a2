"""A Selector over its maxVirtualPods: the status and a Warning say so, and with capEnforcement:
Evict the leader evicts its newest replaceable virtual pods, within budgets and a rate."""

import time

import pytest

from framework import ApiError
from framework.testing import FakeKube, pod
from plugins.eci_profile import plugin as eci
from plugins.eci_profile import selectors
from plugins.eci_profile.cap import SELECTOR_LABEL
from plugins.eci_profile.cap_enforcement import EVICTIONS_PER_MINUTE, CapEnforcer
from plugins.eci_profile.profile import VIRTUAL_PODS, strip_virtual_pod
from plugins.eci_profile.status import SelectorStatusController

from .conftest import default_objects, selector


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def virtual_pod(i, owner="ReplicaSet"):
    p = pod(f"v{i:02}", labels={"app": "nginx", SELECTOR_LABEL: "capped"})
    p["metadata"].update(uid=f"uid-{i}", creationTimestamp=f"2027-01-15T08:{i:02}:00Z")
    if owner:
        p["metadata"]["ownerReferences"] = [{"kind": owner, "name": "web", "uid": "rs", "controller": True}]
    p["spec"]["nodeName"] = "vk-1"
    p["status"] = {"phase": "Running", "startTime": f"2027-01-15T08:{i:02}:05Z"}
    return p


def capped(cap, enforcement="Evict"):
    s = selector("capped", "fair", object_labels={"matchLabels": {"app": "nginx"}})
    s["spec"].update(maxVirtualPods=cap, capEnforcement=enforcement)
    return s


def enforcer(make_harness, sel, pods, kube=None, clock=None):
    harness = make_harness(sel, objects=default_objects() + pods, kube=kube or FakeKube())
    return CapEnforcer(eci.profile_of(harness.host), clock=clock or Clock())


def evicted(kube):
    return [path.split("/")[-2] for _, path, _ in kube.writes("POST") if path.endswith("/eviction")]


def events(kube, reason="VirtualPodCapEnforced"):
    return [body for _, path, body in kube.writes("POST") if body.get("reason") == reason]


def gone(controller, kube):
    """The evicted pods leave the cache, as their deletion comes through the watch."""
    for name in evicted(kube):
        controller.profile.host.store(VIRTUAL_PODS).delete(f"default/{name}")


def test_the_newest_replaceable_pods_past_the_cap_are_evicted(make_harness):
    kube = FakeKube()
    pods = [virtual_pod(i) for i in range(6)] + [virtual_pod(9, owner=None)]  # the newest has no owner
    assert enforcer(make_harness, capped(3), pods, kube).step() == 4
    assert evicted(kube) == ["v05", "v04", "v03", "v02"]
    deadline = time.monotonic() + 10  # Events are posted by a thread of their own
    while len(events(kube)) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(e["involvedObject"]["name"] for e in events(kube)) == ["v02", "v03", "v04", "v05"]
    assert "Selector capped had 4 pods past maxVirtualPods 3" in events(kube)[0]["message"]


def test_evictions_are_rate_limited_and_budgets_respected(make_harness):
    kube, clock = FakeKube(), Clock()
    kube.fail("POST", ApiError(429, "Cannot evict pod as it would violate the pod's disruption budget."),
              path="/api/v1/namespaces/default/pods/v29/eviction")
    controller = enforcer(make_harness, capped(5), [virtual_pod(i) for i in range(30)], kube, clock)
    assert controller.step() == EVICTIONS_PER_MINUTE
    assert evicted(kube)[0] == "v29" and "v28" in evicted(kube)  # the budget said no; the next went
    gone(controller, kube)
    clock.now += 59
    assert controller.step() == 0
    clock.now += 1
    assert controller.step() == EVICTIONS_PER_MINUTE
    text = __import__("prometheus_client").generate_latest(controller.profile.host.metrics.registry).decode()
    assert 'eci_profile_cap_evictions_total{outcome="blocked",selector="capped"} 1.0' in text
    assert 'eci_profile_cap_evictions_total{outcome="evicted",selector="capped"} 20.0' in text


def test_without_evict_nothing_is_evicted(make_harness):
    kube = FakeKube()
    assert enforcer(make_harness, capped(3, "Admission"), [virtual_pod(i) for i in range(6)], kube).step() == 0
    assert evicted(kube) == []


def test_the_status_and_a_warning_say_a_selector_is_over_its_cap(make_harness):
    kube = FakeKube()
    harness = make_harness(capped(3, "Admission"), objects=default_objects() + [virtual_pod(i) for i in range(5)],
                           kube=kube)
    status = SelectorStatusController(eci.profile_of(harness.host))
    entry = harness.store("eci-selectors").get("capped")
    assert status.counts(entry) == {"policy": "fair", "virtualPods": 5, "waitingPods": 0, "virtual": "5/3",
                                    "overCap": 2, "tiers": "virtual=5/3",
                                    "tierPods": [{"name": "virtual", "pods": 5, "maxPods": 3}]}
    kube.objects["/apis/eci.aliyun.com/v1/selectors/capped/status"] = {}
    status.reconcile("capped")
    status.written["capped"] = ("other", status.written["capped"][1])  # a later round, still over
    status.reconcile("capped")
    warnings = [body for _, path, body in kube.writes("POST") if body.get("reason") == "VirtualPodCapExceeded"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
    assert "5 pods on virtual nodes, 2 past maxVirtualPods 3" in warnings[0]["message"]


@pytest.mark.parametrize("spec, error", [
    ({"maxVirtualPods": 3, "capEnforcement": "Delete"}, "spec.capEnforcement must be Admission or Evict"),
    ({"capEnforcement": "Evict"}, "spec.capEnforcement: Evict needs spec.maxVirtualPods"),
])
def test_cap_enforcement_is_checked(spec, error):
    with pytest.raises(selectors.InvalidSelectorSpec, match=error):
        selectors.parse({"metadata": {"name": "bad"}, "spec": {"policy": {"fair": {}}, **spec}})
    sel = selectors.parse({"metadata": {"name": "ok"}, "spec": {"policy": {"fair": {}}, "maxVirtualPods": 3,
                                                                "capEnforcement": "Evict"}})
    assert sel.cap_enforcement == "Evict" and sel.describe_policy() == "fair (cap enforced by eviction)"


def test_a_burst_of_pods_is_one_status_write_a_second_not_one_a_pod(make_harness):
    harness = make_harness(capped(3, "Admission"), kube=FakeKube())
    status = SelectorStatusController(eci.profile_of(harness.host))
    pods = [strip_virtual_pod(virtual_pod(i)) for i in range(50)]
    for pod in pods:
        status.on_virtual_pod("ADDED", None, pod)
    assert len(status.queue) == 0 and status.queue.waiting() == 1  # coalesced, due in COUNTS_EVERY
