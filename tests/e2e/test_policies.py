"""The four policies, checked on pods as the API server stores them and the scheduler binds them."""

from plugins.eci_profile.cap import SELECTOR_LABEL
from tests.e2e.conftest import TOLERATION, VNODE_LABELS
from tests.e2e.host import REPO, wait_for

EXAMPLES = REPO / "deploy" / "examples"


def effect_present(pod) -> bool:
    meta = pod["metadata"]
    return (meta.get("annotations") or {}).get("foo") == "boo" and (meta.get("labels") or {}).get("foo") == "boo"


def test_fair_tolerates_and_effect_follows_the_node(k8s):
    ns = k8s.namespace()
    # Room for three of the six pods on each node: the scheduler has to use both kinds, so the effect
    # is seen to follow the node either way.
    normal, virtual = k8s.node(cpu="1"), k8s.node("virtual", pods="3")
    k8s.apply_selector(EXAMPLES / "fair.yaml")
    names = [f"web-{i}" for i in range(6)]
    for name in names:
        created = k8s.pod(name, ns, labels={"app": "nginx"}, cpu="300m")
        assert TOLERATION in created["spec"]["tolerations"]
        assert "foo" not in (created["metadata"].get("annotations") or {})
    placed = {}
    for name in names:
        pod = k8s.wait_bound(ns, name)
        placed[name] = node = pod["spec"]["nodeName"]
        assert node in (normal, virtual), node
        if node == virtual:  # the labels are PATCHed once the binding is stored: allow a moment
            pod = wait_for(lambda: (lambda p: p if effect_present(p) else None)(k8s.get_pod(ns, name)), 10,
                           what="effect on pod bound to the virtual node")
        assert effect_present(pod) is (node == virtual), (name, node, pod["metadata"])
    assert sorted(placed.values()) == sorted([normal] * 3 + [virtual] * 3), placed
    # The virtual node's pods have their labels by now: none reached a pod on the normal node.
    for name in (n for n, node in placed.items() if node == normal):
        meta = k8s.get_pod(ns, name)["metadata"]
        assert "foo" not in (meta.get("labels") or {}) and "foo" not in (meta.get("annotations") or {}), meta


def test_labels_lost_after_a_binding_come_back(k8s):
    """The labels of a binding go out from memory after it: lost with a replica stopped in that
    moment. The leader's sweep of the virtual nodes (2 s in this suite's host) gives them again."""
    ns = k8s.namespace()
    vnode = k8s.node("virtual")  # the only node: the fair pod is bound there
    name = f"{k8s.id}-sweep"
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
                        "spec": {"objectLabels": {"matchLabels": {"app": "sweep"}}, "policy": {"fair": {}},
                                 "effect": {"labels": {"tier": "burst"}}}})
    k8s.pod("bound", ns, labels={"app": "sweep"})

    def labels(pod):
        return k8s.get_pod(ns, pod)["metadata"].get("labels") or {}

    wanted = {"app": "sweep", "tier": "burst", SELECTOR_LABEL: name}
    assert k8s.wait_bound(ns, "bound")["spec"]["nodeName"] == vnode
    wait_for(lambda: labels("bound") == wanted, 10, what="the binding's labels")
    k8s.admin.patch(f"/api/v1/namespaces/{ns}/pods/bound", {"metadata": {"labels": {"tier": None, SELECTOR_LABEL: None}}})
    assert labels("bound") == {"app": "sweep"}
    wait_for(lambda: labels("bound") == wanted, 15, what="the labels given again by the sweep")


def test_a_pod_created_on_a_virtual_node_gets_the_effect_and_keeps_its_placement(k8s):
    """spec.nodeName bypasses the scheduler: no binding comes, so the effect is given at creation
    (the webhook's matchConditions let such pods through); one created on a normal node is untouched."""
    ns = k8s.namespace()
    vnode, normal = k8s.node("virtual"), k8s.node()
    name = f"{k8s.id}-pinned"
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
                        "spec": {"objectLabels": {"matchLabels": {"app": "pinned"}},
                                 "policy": {"normalNodePrefer": {}},
                                 "effect": {"labels": {"tier": "burst"}, "annotations": {"k8s.aliyun.com/eci-use-specs": "2-4Gi"}}}})
    on_virtual = k8s.pod("on-virtual", ns, labels={"app": "pinned"}, nodeName=vnode, tolerations=[TOLERATION])
    on_normal = k8s.pod("on-normal", ns, labels={"app": "pinned"}, nodeName=normal)
    # As the API server stored them: the create's answer.
    assert on_virtual["metadata"]["labels"] == {"app": "pinned", "tier": "burst", SELECTOR_LABEL: name}
    assert on_virtual["metadata"]["annotations"]["k8s.aliyun.com/eci-use-specs"] == "2-4Gi"
    assert on_virtual["spec"]["tolerations"].count(TOLERATION) == 1 and "nodeSelector" not in on_virtual["spec"]
    assert on_normal["metadata"]["labels"] == {"app": "pinned"}
    assert "k8s.aliyun.com/eci-use-specs" not in (on_normal["metadata"].get("annotations") or {})
    assert TOLERATION not in (on_normal["spec"].get("tolerations") or [])


def test_virtual_node_only_lands_on_virtual_node_keeping_own_node_selector(k8s):
    ns = k8s.namespace()
    normal, virtual = k8s.node(cpu="8"), k8s.node("virtual")
    k8s.apply_selector(EXAMPLES / "virtual-node-only.yaml")
    created = k8s.pod("web", ns, labels={"app": "nginx"}, node_selector={"kubernetes.io/os": "linux"})
    assert created["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux", **VNODE_LABELS}
    assert TOLERATION in created["spec"]["tolerations"]
    assert effect_present(created)  # certain to run on a virtual node: applied at creation
    assert k8s.wait_bound(ns, "web")["spec"]["nodeName"] == virtual
    # The normal node could have taken it: a pod no Selector matches, with the same nodeSelector, goes there.
    k8s.pod("control", ns, labels={"app": "other"}, node_selector={"kubernetes.io/os": "linux"})
    control = k8s.wait_bound(ns, "control")
    assert control["spec"]["nodeName"] == normal and not k8s.is_virtual(normal), control["spec"]["nodeName"]
    assert TOLERATION not in (control["spec"].get("tolerations") or [])


def test_normal_node_prefer_bursts_only_when_normal_nodes_are_full(k8s):
    ns = k8s.namespace()
    normal = [k8s.node(cpu="1"), k8s.node(cpu="1")]
    virtual = k8s.node("virtual")
    k8s.apply_selector({
        "apiVersion": "eci.aliyun.com/v1beta1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-prefer"},
        "spec": {"objectLabels": {"matchLabels": {"app": k8s.id}},
                 "effect": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": -1000},
                            "labels": {"burst": "yes"}},
                 "policy": {"normalNodePrefer": {}}}})
    # 600m each: one pod fits per normal node.
    for i in range(2):
        created = k8s.pod(f"fits-{i}", ns, labels={"app": k8s.id}, cpu="600m")
        assert TOLERATION not in (created["spec"].get("tolerations") or [])
    placed = {k8s.wait_bound(ns, f"fits-{i}")["spec"]["nodeName"] for i in range(2)}
    assert placed == set(normal)
    k8s.pod("overflow", ns, labels={"app": k8s.id}, cpu="600m")
    pod = k8s.wait_bound(ns, "overflow", timeout=30)
    assert pod["spec"]["nodeName"] == virtual
    assert TOLERATION in pod["spec"]["tolerations"]
    pod = wait_for(lambda: (lambda p: p if (p["metadata"].get("labels") or {}).get("burst") else None)(
        k8s.get_pod(ns, "overflow")), 10, what="label on the burst pod")
    assert pod["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == "-1000"
    assert pod["metadata"]["labels"]["burst"] == "yes"
    for i in range(2):
        sibling = k8s.get_pod(ns, f"fits-{i}")
        assert "controller.kubernetes.io/pod-deletion-cost" not in (sibling["metadata"].get("annotations") or {})
        assert "burst" not in sibling["metadata"]["labels"]
        assert TOLERATION not in (sibling["spec"].get("tolerations") or [])
    events = k8s.admin.get(f"/api/v1/namespaces/{ns}/events").get("items") or []
    assert any(e["reason"] == "BurstToVirtualNode" and e["involvedObject"]["name"] == "overflow" for e in events)


def test_normal_node_only_never_tolerates_and_stays_pending(k8s):
    ns = k8s.namespace()
    normal, _ = k8s.node(cpu="1"), k8s.node("virtual")
    k8s.apply_selector({
        "apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-only"},
        "spec": {"objectLabels": {"matchLabels": {"app": k8s.id}}, "effect": {"annotations": {"foo": "boo"}},
                 "policy": {"normalNodeOnly": {}}}})
    k8s.pod("fits", ns, labels={"app": k8s.id}, cpu="600m")
    assert k8s.wait_bound(ns, "fits")["spec"]["nodeName"] == normal
    k8s.pod("waits", ns, labels={"app": k8s.id}, cpu="600m")
    k8s.wait_unschedulable(ns, "waits")
    import time

    time.sleep(2)  # give the burst controller every chance to (wrongly) act
    pod = k8s.get_pod(ns, "waits")
    assert not pod["spec"].get("nodeName")
    assert TOLERATION not in (pod["spec"].get("tolerations") or [])
