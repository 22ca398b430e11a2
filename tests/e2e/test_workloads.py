"""Workloads as users run them, on the current release: the controller manager makes the pods,
KWOK runs them on simulated nodes, ReplicaSets scale in, the scheduler retries after a burst."""

import time

import pytest

from tests.e2e.cluster import selected_release
from tests.e2e.conftest import TOLERATION
from tests.e2e.host import REPO, wait_for

EXAMPLES = REPO / "deploy" / "examples"
pytestmark = pytest.mark.skipif(not selected_release().simulated_nodes,
                                reason="needs kube-controller-manager and KWOK (the current release)")


def on_virtual(k8s, pods) -> list:
    return [p for p in pods if k8s.is_virtual(p["spec"]["nodeName"])]


def test_pods_run_on_simulated_nodes_and_deletions_finish(k8s):
    ns = k8s.namespace()
    node = k8s.node()
    k8s.pod("web", ns, labels={"app": k8s.id})
    running = wait_for(lambda: (lambda p: p if p["status"].get("phase") == "Running" else None)(
        k8s.get_pod(ns, "web")), 20, what="pod Running")
    assert running["spec"]["nodeName"] == node
    assert {c["type"]: c["status"] for c in running["status"]["conditions"]}["Ready"] == "True"
    assert running["status"]["podIP"]
    # A graceful delete needs the kubelet's confirmation: KWOK gives it.
    k8s.admin.delete(f"/api/v1/namespaces/{ns}/pods/web")
    wait_for(lambda: not k8s.pods(ns, {"app": k8s.id}), 20, what="pod deletion finished")


def test_fair_deployment_scales_past_normal_capacity_and_back(k8s):
    """The seed's test-fair with its pod-deletion-cost effect: virtual pods are removed first."""
    ns = k8s.namespace()
    k8s.node(cpu="1"), k8s.node("virtual")
    k8s.apply_selector(EXAMPLES / "fair-pod-deletion-cost.yaml")
    labels = {"app": "nginx"}
    k8s.deployment("nginx", ns, labels, replicas=2, cpu="400m")
    k8s.wait_running(ns, labels, 2)
    k8s.scale(ns, "nginx", 8)  # two fit on the normal node: at least six must run on the virtual one
    pods = k8s.wait_running(ns, labels, 8)
    assert all(TOLERATION in p["spec"]["tolerations"] for p in pods)
    virtual = on_virtual(k8s, pods)
    assert len(virtual) >= 6
    for p in virtual:
        assert p["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == "-1000"
    normal_before = {p["metadata"]["name"] for p in pods} - {p["metadata"]["name"] for p in virtual}

    k8s.scale(ns, "nginx", len(normal_before))
    kept = k8s.wait_running(ns, labels, len(normal_before))
    # ReplicaSets remove the lowest pod-deletion-cost first: every normal pod survives.
    assert {p["metadata"]["name"] for p in kept} == normal_before


def test_normal_node_prefer_deployment_bursts_then_scales_in(k8s):
    ns = k8s.namespace()
    normal, virtual = k8s.node(cpu="1"), k8s.node("virtual")
    k8s.apply_selector(EXAMPLES / "normal-node-prefer.yaml")
    labels = {"app": "nginx"}
    k8s.deployment("nginx", ns, labels, replicas=2, cpu="400m")
    first = k8s.wait_running(ns, labels, 2)
    assert {p["spec"]["nodeName"] for p in first} == {normal}
    assert all(TOLERATION not in (p["spec"].get("tolerations") or []) for p in first)

    k8s.scale(ns, "nginx", 5)  # three do not fit: Unschedulable, then tolerated and bound to the virtual node
    pods = k8s.wait_running(ns, labels, 5)
    burst = on_virtual(k8s, pods)
    assert len(burst) == 3 and all(p["spec"]["nodeName"] == virtual for p in burst)
    for p in burst:
        assert TOLERATION in p["spec"]["tolerations"]
        meta = wait_for(lambda: (lambda m: m if m.get("labels", {}).get("foo") == "boo" else None)(
            k8s.get_pod(ns, p["metadata"]["name"])["metadata"]), 10, what="effect labels on a burst pod")
        assert meta["annotations"]["foo"] == "boo"

    k8s.scale(ns, "nginx", 2)
    assert len(k8s.wait_running(ns, labels, 2)) == 2


def test_scheduler_retries_a_tolerated_pod_at_once(k8s):
    """Queueing hints (1.32+): the toleration PATCH moves an Unschedulable pod back to the active
    queue; without that the pod would wait for the scheduler's periodic flush."""
    ns = k8s.namespace()
    k8s.node("virtual")
    k8s.pod("waits", ns, labels={"app": k8s.id})
    k8s.wait_unschedulable(ns, "waits")
    patched = time.monotonic()
    k8s.admin.patch(f"/api/v1/namespaces/{ns}/pods/waits", [
        {"op": "add", "path": "/spec/tolerations/-", "value": TOLERATION}], content_type="application/json-patch+json")
    k8s.wait_bound(ns, "waits", timeout=10)
    assert time.monotonic() - patched < 2.0
