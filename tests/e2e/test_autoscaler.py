"""The test cluster's autoscaler: Karpenter's KWOK provider grows a NodePool of simulated normal
nodes for Unschedulable pods, says so in Events on the pods, and removes nodes that are empty."""

import pytest

from framework import ApiError
from tests.e2e.cluster import selected_release
from tests.e2e.host import wait_for

pytestmark = pytest.mark.skipif(not selected_release().simulated_nodes,
                                reason="needs kube-controller-manager, KWOK and Karpenter (the current release)")
NODEPOOLS = "/apis/karpenter.sh/v1/nodepools"
NODECLAIMS = "/apis/karpenter.sh/v1/nodeclaims"
POOL = "e2e-normal"


@pytest.fixture(scope="module")
def autoscaler(control_plane, admin):
    """A NodePool of 2-CPU on-demand nodes, at most 4 CPUs (two nodes), emptied nodes removed at once."""
    control_plane.start_autoscaler()
    admin.post("/apis/karpenter.kwok.sh/v1alpha1/kwoknodeclasses", {
        "apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass", "metadata": {"name": POOL}})
    admin.post(NODEPOOLS, {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": POOL},
        "spec": {"limits": {"cpu": "4"},
                 "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "2s"},
                 "template": {"spec": {
                     "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": POOL},
                     "expireAfter": "Never",
                     "requirements": [
                         {"key": "karpenter.kwok.sh/instance-cpu", "operator": "In", "values": ["2"]},
                         {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]}}}})
    yield POOL
    # Karpenter finalizes its NodeClaims and nodes: remove the pool while it still runs.
    admin.delete(f"{NODEPOOLS}/{POOL}")
    wait_for(lambda: not admin.get(NODECLAIMS).get("items"), 60, what="Karpenter's nodes removed")
    admin.delete(f"/apis/karpenter.kwok.sh/v1alpha1/kwoknodeclasses/{POOL}")
    control_plane.stop_autoscaler()


def pool_nodes(admin) -> list:
    return admin.get("/api/v1/nodes", labelSelector=f"karpenter.sh/nodepool={POOL}").get("items") or []


def events_for(admin, ns, pod, component) -> list:
    items = admin.get(f"/api/v1/namespaces/{ns}/events",
                      fieldSelector=f"involvedObject.name={pod}").get("items") or []
    return [e for e in items if component in (e.get("reportingComponent"), (e.get("source") or {}).get("component"))]


def test_nodepool_grows_for_unschedulable_pods_and_shrinks_when_empty(k8s, autoscaler):
    ns = k8s.namespace()
    labels = {"app": k8s.id}
    # 1500m each: one per 2-CPU node, and the pool stops at two nodes.
    k8s.deployment("grows", ns, labels, replicas=3, cpu="1500m")
    wait_for(lambda: len(pool_nodes(k8s.admin)) == 2, 60, what="two nodes added to the pool")

    def two_running_one_pending():
        pods = k8s.pods(ns, labels)
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return pods if len(pods) == 3 and len(running) == 2 else None
    pods = wait_for(two_running_one_pending, 60, what="two pods Running on the new nodes")
    assert {p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")} == \
        {n["metadata"]["name"] for n in pool_nodes(k8s.admin)}

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
    wait_for(lambda: not pool_nodes(k8s.admin), 90, what="empty nodes removed from the pool")


def test_an_autoscaler_node_is_a_normal_node_for_the_host(k8s, autoscaler):
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
