"""The test cluster's autoscaler: Karpenter's KWOK provider grows a NodePool of simulated normal
nodes for Unschedulable pods, says so in Events on the pods, and removes nodes that are empty."""

import pytest

from framework import ApiError
from tests.e2e.cluster import selected_release
from tests.e2e.conftest import events_for, pool_nodes
from tests.e2e.host import wait_for

pytestmark = pytest.mark.skipif(not selected_release().simulated_nodes,
                                reason="needs kube-controller-manager, KWOK and Karpenter (the current release)")
POOL = "e2e-normal"


@pytest.fixture
def autoscaler(nodepool):
    """A NodePool of 2-CPU nodes, at most two of them, emptied nodes removed after 2 s."""
    return nodepool(POOL, max_cpu="4")


def test_nodepool_grows_for_unschedulable_pods_and_shrinks_when_empty(autoscaler, k8s):
    ns = k8s.namespace()
    labels = {"app": k8s.id}
    # 1500m each: one per 2-CPU node, and the pool stops at two nodes.
    k8s.deployment("grows", ns, labels, replicas=3, cpu="1500m")
    wait_for(lambda: len(pool_nodes(k8s.admin, POOL)) == 2, 60, what="two nodes added to the pool")

    def two_running_one_pending():
        pods = k8s.pods(ns, labels)
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return pods if len(pods) == 3 and len(running) == 2 else None
    pods = wait_for(two_running_one_pending, 60, what="two pods Running on the new nodes")
    assert {p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")} == \
        {n["metadata"]["name"] for n in pool_nodes(k8s.admin, POOL)}

    # What the autoscaler said, on the pods, as the burst engine reads it.
    pending = next(p["metadata"]["name"] for p in pods if not p["spec"].get("nodeName"))
    said = wait_for(lambda: [e for e in events_for(k8s.admin, ns, pending, "karpenter")
                             if e["reason"] == "FailedScheduling" and "exceed limits" in e["message"]], 30,
                    what="Karpenter saying the pool is at its limit")
    assert POOL in said[0]["message"]
    nominated = [e for p in pods if p["spec"].get("nodeName")
                 for e in events_for(k8s.admin, ns, p["metadata"]["name"], "karpenter") if e["reason"] == "Nominated"]
    assert nominated and all(e["message"].startswith("Pod should schedule on: nodeclaim/") for e in nominated)

    k8s.scale(ns, "grows", 0)
    wait_for(lambda: not pool_nodes(k8s.admin, POOL), 90, what="empty nodes removed from the pool")


def test_an_autoscaler_node_is_a_normal_node_for_the_host(autoscaler, k8s):
    """Nodes Karpenter adds carry no virtual-node label: what lands there gets no effect."""
    ns = k8s.namespace()
    k8s.apply_selector({
        "apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-prefer"},
        "spec": {"objectLabels": {"matchLabels": {"app": k8s.id}}, "policy": {"normalNodePrefer": {}},
                 "effect": {"labels": {"burst": "yes"}}}})
    k8s.pod("grows", ns, labels={"app": k8s.id}, cpu="1500m")
    pod = k8s.wait_bound(ns, "grows", timeout=60)
    try:
        node = k8s.admin.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")
    except ApiError:
        pytest.fail("the pod was bound to a node that is gone")
    assert node["metadata"]["labels"]["karpenter.sh/nodepool"] == POOL
    assert "burst" not in pod["metadata"].get("labels", {})
