"""Tiers on the real control plane: an on-demand pool, a tainted spot pool that Karpenter grows
(capped), and virtual nodes. Filled in order, emptied in reverse, drained back at the rate asked;
and the API server's own schema refusing a Selector with both a policy and tiers."""

import json
import time

import pytest

from plugins.eci_profile.cap import SELECTOR_LABEL
from plugins.eci_profile.tiers import TIER_LABEL
from tests.e2e.cluster import selected_release
from tests.e2e.conftest import events_for, pool_nodes
from tests.e2e.host import kubectl, wait_for

SPOT_TAINT = {"key": "spot", "value": "true", "effect": "NoSchedule"}
needs_simulated_nodes = pytest.mark.skipif(not selected_release().simulated_nodes,
                                           reason="needs kube-controller-manager, KWOK and Karpenter (the current release)")


def test_the_api_server_refuses_a_selector_with_both_a_policy_and_tiers_or_neither(k8s):
    for spec in ({"policy": {"fair": {}}, "tiers": [{"name": "a"}]}, {"priority": 1}):
        out = kubectl(k8s.cp, "apply", "-f", "-", check=False, input=json.dumps(
            {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-both"},
             "spec": spec}))
        assert out.returncode != 0 and "spec" in out.stderr, (spec, out.stderr)


def tier_of(pod) -> str:
    return pod["metadata"]["labels"].get(TIER_LABEL, "")


def by_tier(pods) -> dict:
    counts = {}
    for p in pods:
        counts[tier_of(p)] = counts.get(tier_of(p), 0) + 1
    return counts


@needs_simulated_nodes
def test_a_deployment_fills_its_tiers_in_order_empties_them_in_reverse_and_drains_back(nodepool, k8s):
    ns = k8s.namespace()
    # On-demand: room for 20 pods of 500m. Spot: a Karpenter pool of 4-CPU nodes up to 16 CPU (room
    # for 32), tainted, capped at 20 by the Selector. Virtual: the rest.
    for _ in range(2):
        k8s.node(cpu="5", labels={"pool": "on-demand"})
    k8s.node("virtual")
    pool = nodepool(f"{k8s.id}-spot", max_cpu="16", node_cpu="4", labels={"pool": "spot"}, taints=[SPOT_TAINT])
    name = f"{k8s.id}-tiers"
    selector = {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
                "spec": {"objectLabels": {"matchLabels": {"app": k8s.id}}, "effect": {"labels": {"burst": "yes"}},
                         "tiers": [
                             {"name": "on-demand", "nodeLabels": {"pool": "on-demand"}},
                             {"name": "spot", "nodeLabels": {"pool": "spot"},
                              "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
                              "maxPods": 20, "waitForAutoscaler": True, "burstAfter": "10s", "maxWait": "3m"},
                             {"name": "virtual", "virtualNodes": True}]}}
    k8s.apply_selector(selector)
    labels = {"app": k8s.id}
    k8s.deployment("web", ns, labels, replicas=0, cpu="500m")
    k8s.scale(ns, "web", 60)
    started = time.monotonic()

    def settled():
        pods = k8s.pods(ns, labels)
        placed = [p for p in pods if p["status"].get("phase") == "Running" and tier_of(p)]
        return pods if len(pods) == 60 and len(placed) == 60 else None

    pods = wait_for(settled, 240, 1, what="60 pods Running, each in a tier")
    took = time.monotonic() - started
    assert by_tier(pods) == {"on-demand": 20, "spot": 20, "virtual": 20}, by_tier(pods)
    assert pool_nodes(k8s.admin, pool), "Karpenter grew the spot pool"
    # Each pod's tier is its node's; the effect only on the virtual nodes.
    for p in pods:
        node = p["spec"]["nodeName"]
        where = ("virtual" if k8s.is_virtual(node) else "spot" if pool in node  # kwok-POOL-...
                 else "on-demand" if node.startswith(f"{k8s.id}-normal") else node)
        assert tier_of(p) == where and p["metadata"]["labels"][SELECTOR_LABEL] == name, (node, p["metadata"])
        assert (p["metadata"]["labels"].get("burst") == "yes") is (where == "virtual"), (node, p["metadata"])
    costs = {tier_of(p): (p["metadata"].get("annotations") or {}).get("controller.kubernetes.io/pod-deletion-cost")
             for p in pods}
    assert costs == {"on-demand": None, "spot": "-1000", "virtual": "-2000"}, costs
    spot = [p for p in pods if tier_of(p) == "spot"][:5]
    moved = [e for p in spot for e in events_for(k8s.admin, ns, p["metadata"]["name"], "admission-host-eci-profile")
             if e["reason"] == "MovedToTier"]
    assert moved and all("tier spot opened" in e["message"] for e in moved), moved
    status = wait_for(lambda: (lambda s: s if s.get("tiers") == "on-demand=20,spot=20/20,virtual=20" else None)(
        k8s.admin.get(f"/apis/eci.aliyun.com/v1/selectors/{name}").get("status") or {}), 30,
        what="the status counting each tier")
    assert status["tierPods"][1] == {"name": "spot", "pods": 20, "maxPods": 20}
    print(f"60 pods placed in {took:.1f} s")

    # Scale-in: virtual pods first.
    def left(count):
        return wait_for(lambda: (lambda ps: ps if len(ps) == count else None)(
            [p for p in k8s.pods(ns, labels) if not p["metadata"].get("deletionTimestamp")]), 60, 0.5,
            what=f"{count} pods left")

    k8s.scale(ns, "web", 42)
    assert by_tier(left(42)) == {"on-demand": 20, "spot": 20, "virtual": 2}

    # On-demand room for 4 more, and drain-back asked for: the latest tier's pods come back first,
    # then spot's, 2 a minute.
    k8s.node(cpu="2", labels={"pool": "on-demand"})
    selector["spec"]["drainBack"] = {"after": "2s", "maxPerMinute": 2}
    k8s.apply_selector(selector)
    asked = time.monotonic()

    def placed(want):
        return lambda: (lambda ps: ps if by_tier(ps) == want else None)(k8s.wait_running(ns, labels, 42, timeout=60))

    wait_for(placed({"on-demand": 22, "spot": 20}), 60, 1, what="the two virtual pods back on on-demand")
    time.sleep(10)
    assert by_tier(k8s.wait_running(ns, labels, 42)) == {"on-demand": 22, "spot": 20}, "more than 2 in a minute"
    wait_for(placed({"on-demand": 24, "spot": 18}), 150, 1, what="then two spot pods back on on-demand")
    assert time.monotonic() - asked >= 50, "maxPerMinute 2, but four pods came back within a minute"

    # Scale-in again: spot before on-demand.
    k8s.scale(ns, "web", 30)
    assert by_tier(left(30)) == {"on-demand": 24, "spot": 6}
