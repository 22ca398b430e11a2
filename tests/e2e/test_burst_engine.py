"""The burst engine on the current release: burstAfter, waiting for the real autoscaler (Karpenter),
the cap under a burst, scale-in order, drain-back with a PodDisruptionBudget, DaemonSets untouched."""

import time

import pytest

from tests.e2e.cluster import selected_release
from tests.e2e.conftest import TOLERATION, events_for, pool_nodes
from tests.e2e.host import kubectl, wait_for
from tests.e2e.test_operability import metric

pytestmark = pytest.mark.skipif(not selected_release().simulated_nodes,
                                reason="needs kube-controller-manager, KWOK and Karpenter (the current release)")
SELECTOR_LABEL = "eci.aliyun.com/selector"


def prefer(k8s, app, timing=None, **spec):
    return k8s.apply_selector({
        "apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-{app}"},
        "spec": {"objectLabels": {"matchLabels": {"app": app}}, "policy": {"normalNodePrefer": timing or {}},
                 **spec}})


def tolerated(pod) -> bool:
    return TOLERATION in (pod["spec"].get("tolerations") or [])


def on_virtual(k8s, pods) -> list:
    return [p for p in pods if p["spec"].get("nodeName") and k8s.is_virtual(p["spec"]["nodeName"])]


def test_burst_after_is_respected(k8s):
    ns = k8s.namespace()
    k8s.node("virtual")
    prefer(k8s, k8s.id, {"burstAfter": "6s"})
    k8s.pod("late", ns, labels={"app": k8s.id})
    k8s.wait_unschedulable(ns, "late")
    seen = time.monotonic()
    time.sleep(2.5)
    assert not tolerated(k8s.get_pod(ns, "late")), "burst before burstAfter"
    bound = k8s.wait_bound(ns, "late", timeout=30)
    waited = time.monotonic() - seen
    assert tolerated(bound) and k8s.is_virtual(bound["spec"]["nodeName"])
    # Condition times have whole seconds: the burst comes 5-6 s after we saw the pod Unschedulable,
    # later on a loaded machine, never sooner.
    assert waited >= 4.5, waited
    # The host posts its Events from a background thread: they may follow the binding.
    wait_for(lambda: {"BurstDelayed", "BurstToVirtualNode"} <= {
        e["reason"] for e in events_for(k8s.admin, ns, "late", "admission-host-eci-profile")}, 10,
        what="the BurstDelayed and BurstToVirtualNode Events")


def test_pods_wait_for_a_node_the_autoscaler_adds(nodepool, k8s):
    """A pool that can grow: the extra pods land on Karpenter's new normal node, not the virtual one."""
    ns = k8s.namespace()
    k8s.node(cpu="1"), k8s.node("virtual")
    pool = nodepool(f"{k8s.id}-grows", max_cpu="4")
    prefer(k8s, "nginx", {"waitForAutoscaler": True, "burstAfter": "20s", "maxWait": "3m"})
    labels = {"app": "nginx"}
    k8s.deployment("web", ns, labels, replicas=4, cpu="600m")  # one fits the normal node; 3 wait
    pods = k8s.wait_running(ns, labels, 4, timeout=120)
    assert not on_virtual(k8s, pods), [p["spec"]["nodeName"] for p in pods]
    assert not any(tolerated(p) for p in pods)
    assert pool_nodes(k8s.admin, pool)
    waited = [e for p in pods for e in events_for(k8s.admin, ns, p["metadata"]["name"], "admission-host-eci-profile")
              if e["reason"] == "BurstDelayed"]
    # Told why they wait: Karpenter's word when the host looked after it spoke (it looks every 5 s;
    # a node made sooner than that takes the pods before the next look), else the wait for one.
    messages = [e["message"] for e in waited]
    assert messages and all("karpenter is provisioning a node" in m or "no autoscaler said it is adding a node; "
                            "bursts after 20s" in m for m in messages), messages


def test_pods_burst_without_waiting_when_the_autoscaler_cannot_help(nodepool, k8s):
    """A pool at its maximum: Karpenter says so, and the pods burst at burstAfter, not maxWait."""
    ns = k8s.namespace()
    k8s.node("virtual")
    nodepool(f"{k8s.id}-full", max_cpu="0")
    prefer(k8s, k8s.id, {"waitForAutoscaler": True, "burstAfter": "3s", "maxWait": "10m"})
    k8s.pod("full", ns, labels={"app": k8s.id})
    bound = k8s.wait_bound(ns, "full", timeout=60)
    assert k8s.is_virtual(bound["spec"]["nodeName"])
    said = [e for e in events_for(k8s.admin, ns, "full", "karpenter") if e["reason"] == "FailedScheduling"]
    assert said and "exceed limits" in said[0]["message"]
    status, text = k8s.host.get("/metrics")
    assert metric(text, "eci_profile_burst_decisions_total", reason="autoscalerCannotHelp") >= 1


def burst_of_fifty(k8s, name):
    """A fair Selector capped at 10 and a Deployment of 50 pods that only a virtual node can take."""
    ns = k8s.namespace()
    k8s.node("virtual")
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
                        "spec": {"objectLabels": {"matchLabels": {"app": k8s.id}}, "policy": {"fair": {}},
                                 "maxVirtualPods": 10}})
    labels = {"app": k8s.id}
    k8s.deployment("burst", ns, labels, replicas=50, cpu="10m")
    return ns, labels


def most_on_virtual(k8s, ns, labels, settle=10.0, timeout=120.0, interval=0.2) -> int:
    """The most of the 50 pods seen on virtual nodes at once: watched until all 50 exist and the cap's
    10 are there, then ``settle`` seconds more while the scheduler keeps retrying the others."""
    most, started, settled = 0, time.monotonic(), None
    while settled is None or time.monotonic() < settled:
        pods = k8s.pods(ns, labels)
        most = max(most, len(on_virtual(k8s, pods)))
        if settled is None and len(pods) == 50 and most >= 10:
            settled = time.monotonic() + settle
        assert time.monotonic() - started < timeout, f"{len(pods)} pods, at most {most} on virtual nodes"
        time.sleep(interval)
    return most


def test_the_cap_holds_under_a_burst_of_fifty_pods(k8s):
    name = f"{k8s.id}-capped"
    ns, labels = burst_of_fifty(k8s, name)
    most = most_on_virtual(k8s, ns, labels)
    time.sleep(3)  # the scheduler keeps retrying the others: none may get through
    pods = k8s.pods(ns, labels)
    assert most == 10 and len(on_virtual(k8s, pods)) == 10
    assert all(p["metadata"]["labels"].get(SELECTOR_LABEL) == name for p in on_virtual(k8s, pods))
    pending = [p for p in pods if not p["spec"].get("nodeName")]
    assert len(pending) == 40
    refused = [e for p in pending[:5] for e in events_for(k8s.admin, ns, p["metadata"]["name"])
               if e["reason"] == "VirtualPodCapReached"]
    assert refused and "at most 10 pods on virtual nodes" in refused[0]["message"]
    selector = wait_for(lambda: (lambda s: s if s.get("status", {}).get("virtual") == "10/10" else None)(
        k8s.admin.get(f"/apis/eci.aliyun.com/v1/selectors/{name}")), 20, what="status 10/10")
    assert selector["status"]["virtualPods"] == 10
    table = kubectl(k8s.cp, "get", "selector", name).stdout.split("\n")
    assert table[0].split() == ["NAME", "PRIORITY", "POLICY", "VIRTUAL", "TIERS", "WAITING", "VALID", "AGE"]
    assert table[1].split()[:4] == [name, "0", "fair", "10/10"]


def test_scale_down_removes_virtual_pods_first(k8s):
    ns = k8s.namespace()
    normal, _ = k8s.node(cpu="1"), k8s.node("virtual")
    prefer(k8s, k8s.id, scaleIn="VirtualFirst")
    labels = {"app": k8s.id}
    k8s.deployment("web", ns, labels, replicas=2, cpu="400m")
    k8s.wait_running(ns, labels, 2)
    k8s.scale(ns, "web", 5)
    pods = k8s.wait_running(ns, labels, 5)
    assert len(on_virtual(k8s, pods)) == 3
    for p in on_virtual(k8s, pods):
        assert p["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == "-1000"
    k8s.scale(ns, "web", 2)
    kept = k8s.wait_running(ns, labels, 2)
    assert {p["spec"]["nodeName"] for p in kept} == {normal}


def test_drain_back_respects_the_budget_and_the_rate(k8s):
    ns = k8s.namespace()
    k8s.node(cpu="1"), k8s.node("virtual")
    name = prefer(k8s, k8s.id, drainBack={"after": "2s", "maxPerMinute": 2})["metadata"]["name"]
    labels = {"app": k8s.id}
    k8s.admin.post(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"minAvailable": 4, "selector": {"matchLabels": labels}}})
    k8s.deployment("web", ns, labels, replicas=4, cpu="600m")  # one fits the normal node, 3 burst
    assert len(on_virtual(k8s, k8s.wait_running(ns, labels, 4))) == 3
    k8s.node(cpu="4")  # room for all of them on normal nodes now
    time.sleep(12)  # the budget allows no disruption: nothing moves
    assert len(on_virtual(k8s, k8s.wait_running(ns, labels, 4))) == 3
    status, text = k8s.host.get("/metrics")
    assert metric(text, "eci_profile_drain_backs_total", selector=name, outcome="blocked") >= 1

    k8s.admin.patch(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/web",
                    {"spec": {"minAvailable": 3}})
    started = time.monotonic()
    wait_for(lambda: len(on_virtual(k8s, k8s.pods(ns, labels))) <= 1, 60, 0.5, what="two pods drained back")
    two = time.monotonic() - started
    pods = wait_for(lambda: (lambda ps: ps if not on_virtual(k8s, ps) and len(ps) == 4 and all(
        p["status"].get("phase") == "Running" for p in ps) else None)(k8s.pods(ns, labels)), 120, 0.5,
        what="every pod back on normal nodes")
    total = time.monotonic() - started
    assert total >= 50, f"maxPerMinute 2 but three pods drained back in {total:.0f} s (two in {two:.0f} s)"
    assert not any(tolerated(p) for p in pods)  # the replacements got normal nodes without bursting


def test_daemonset_pods_are_untouched(k8s):
    ns = k8s.namespace()
    normal, _ = k8s.node(), k8s.node("virtual")
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-all"},
                        "spec": {"objectLabels": {"matchLabels": {"app": k8s.id}}, "policy": {"fair": {}},
                                 "effect": {"labels": {"burst": "yes"}}}})
    labels = {"app": k8s.id}
    excluded_before = match_condition_exclusions(k8s)
    k8s.admin.post(f"/apis/apps/v1/namespaces/{ns}/daemonsets", {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "containers": [{"name": "a", "image": "agent", "resources": {"requests": {"cpu": "10m"}}}]}}}})
    pods = wait_for(lambda: (lambda ps: ps if ps and all(p["status"].get("phase") == "Running" for p in ps)
                             else None)(k8s.pods(ns, labels)), 30, what="DaemonSet pods Running")
    # Its pods got neither the toleration nor the effect: the virtual node (tainted) runs none.
    assert {p["spec"]["nodeName"] for p in pods} == {normal}
    assert not any(tolerated(p) or "burst" in p["metadata"]["labels"] for p in pods)
    # deploy/'s matchConditions kept the API server from even calling the host for them: the calls
    # saved, counted by the API server itself; and none of the conditions failed to evaluate.
    assert match_condition_exclusions(k8s) - excluded_before >= len(pods)
    assert match_condition_exclusions(k8s, "evaluation_errors") == 0


def match_condition_exclusions(k8s, what: str = "exclusions") -> float:
    """The API server's count of requests its matchConditions kept from the host's webhook."""
    text = kubectl(k8s.cp, "get", "--raw", "/metrics").stdout
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(f"apiserver_admission_match_condition_{what}_total{{")
               and 'name="admission-host.eci.aliyun.com"' in line)


OPENED_AT_CREATION = "eci.aliyun.com/opened-at-creation"


def tried_and_failed(k8s, ns, pod) -> bool:
    return any(e["reason"] == "FailedScheduling" for e in events_for(k8s.admin, ns, pod["metadata"]["name"]))


def test_siblings_of_a_pod_found_unschedulable_take_one_try_and_a_normal_node_with_room_still_wins(k8s):
    """The burst path of many pods (docs/selectors.md, "A burst of many pods: one try each"), on the
    real scheduler: once one pod of the Deployment is found Unschedulable, its next siblings are let
    onto virtual nodes at creation and bound at their first try; the normalNodePrefer guarantee holds
    on that path: a normal node with room (a pod gone, a node added) takes the next pods."""
    ns = k8s.namespace()
    normal, _ = k8s.node(cpu="2"), k8s.node("virtual")
    prefer(k8s, k8s.id)
    labels = {"app": k8s.id}
    k8s.deployment("web", ns, labels, replicas=4, cpu="500m")
    first = k8s.wait_running(ns, labels, 4)
    assert {p["spec"]["nodeName"] for p in first} == {normal}  # room on normal nodes is used first

    # One more: the scheduler finds it Unschedulable, the burst controller lets it onto virtual nodes.
    k8s.scale(ns, "web", 5)
    wait_for(lambda: [p for p in k8s.pods(ns, labels) if tolerated(p)], 20, 0.05, "the fifth pod burst")

    # A normal pod goes: its replacement, created while normal nodes are believed full, is let onto
    # virtual nodes at creation, and still takes the room on the normal node.
    gone = first[0]["metadata"]["name"]
    k8s.admin.delete(f"/api/v1/namespaces/{ns}/pods/{gone}", gracePeriodSeconds=0)
    pods = k8s.wait_running(ns, labels, 5)
    replacement, = [p for p in pods if p["metadata"]["name"] not in {q["metadata"]["name"] for q in first}
                    and not tried_and_failed(k8s, ns, p)]
    assert replacement["metadata"]["annotations"].get(OPENED_AT_CREATION) == "virtual" and tolerated(replacement)
    assert replacement["spec"]["nodeName"] == normal

    # The siblings created now: on virtual nodes at their first try.
    k8s.scale(ns, "web", 20)
    pods = k8s.wait_running(ns, labels, 20, timeout=90)
    opened = [p for p in pods if (p["metadata"].get("annotations") or {}).get(OPENED_AT_CREATION) == "virtual"]
    assert sum(1 for p in pods if p["spec"]["nodeName"] == normal) == 4
    assert len(opened) >= 12, len(opened)
    assert not [p["metadata"]["name"] for p in opened if tried_and_failed(k8s, ns, p)]
    assert metric(k8s.host.get("/metrics")[1], "eci_profile_burst_decisions_total",
                  reason="openedAtCreation") >= len(opened)

    # A normal node added: the host stops believing the normal nodes full, so new pods take the
    # step-by-step path, and the new node's room is all theirs.
    added = k8s.node(cpu="2")
    time.sleep(1)  # the host's node watch sees it (the scheduler's did before create_node returned)
    k8s.scale(ns, "web", 24)
    pods = k8s.wait_running(ns, labels, 24, timeout=60)
    assert sum(1 for p in pods if p["spec"]["nodeName"] == added) == 4
    assert sum(1 for p in pods if p["spec"]["nodeName"] == normal) == 4
