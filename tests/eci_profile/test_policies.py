"""The four policies at pod creation, the effect, existing keys, configuration, idempotency."""

import jsonpatch

from framework.testing import pod, review

from plugins.eci_profile.cap import SELECTOR_LABEL

from .conftest import TOLERATION, VNODE, seed, selector


def nginx(**spec):
    p = pod("web", labels={"app": "nginx"})
    p["spec"].update(spec)
    return p


def test_fair_adds_toleration_and_no_effect(make_harness):
    result = make_harness(seed("fair.yaml")).create(nginx())
    assert result.object["spec"]["tolerations"] == [TOLERATION]
    assert "annotations" not in result.object["metadata"]
    assert result.object["metadata"]["labels"] == {"app": "nginx"}
    assert "nodeSelector" not in result.object["spec"]
    assert result.audit_annotations == {"selector": "test-fair"}


def test_fair_keeps_existing_tolerations_and_does_not_duplicate(make_harness):
    other = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    result = make_harness(seed("fair.yaml")).create(nginx(tolerations=[other, dict(TOLERATION)]))
    assert result.patch == []
    assert result.object["spec"]["tolerations"] == [other, TOLERATION]


def test_virtual_node_only_merges_node_selector_and_applies_effect(make_harness):
    result = make_harness(seed("virtual-node-only.yaml")).create(nginx(nodeSelector={"disk": "ssd"}))
    spec, meta = result.object["spec"], result.object["metadata"]
    assert spec["nodeSelector"] == {"disk": "ssd", **VNODE}
    assert spec["tolerations"] == [TOLERATION]
    assert meta["annotations"] == {"foo": "boo"}
    assert meta["labels"] == {"app": "nginx", "foo": "boo"}


def test_virtual_node_only_overrides_conflicting_node_selector_with_warning(make_harness):
    result = make_harness(seed("virtual-node-only.yaml")).create(nginx(nodeSelector={"k8s.aliyun.com/vnode": "false"}))
    assert result.object["spec"]["nodeSelector"] == VNODE
    assert any("replaced" in w for w in result.warnings)


def test_normal_node_prefer_and_only_change_nothing_at_creation(make_harness):
    for sel in (seed("normal-node-prefer.yaml"), selector("only", "normalNodeOnly", annotations={"a": "b"})):
        result = make_harness(sel).create(nginx())
        assert result.patch == []
        assert result.audit_annotations == {"selector": sel["metadata"]["name"]}


def test_pods_that_must_not_move_are_left_alone(make_harness):
    """DaemonSet pods, static and mirror pods (on any node), and pods created on a normal node."""
    harness = make_harness(seed("virtual-node-only.yaml"))
    daemon = nginx(nodeName="vk-1")
    daemon["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                              "uid": "u1", "controller": True}]
    mirror = nginx(nodeName="vk-1")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    for pod in (daemon, mirror, nginx(nodeName="normal-1")):
        result = harness.create(pod)
        assert result.patch == [] and result.audit_annotations == {}, pod


def test_a_pod_created_on_a_virtual_node_gets_the_effect_and_keeps_its_placement(make_harness):
    """spec.nodeName bypasses the scheduler, so no binding comes: the effect is given at creation,
    with the Selector's label the caps and the status count by; no tolerations, no nodeSelector."""
    for name in ("virtual-node-only.yaml", "fair.yaml", "normal-node-prefer.yaml"):
        sel = seed(name)
        result = make_harness(sel).create(nginx(nodeName="vk-1"))
        meta, spec = result.object["metadata"], result.object["spec"]
        assert "tolerations" not in spec and "nodeSelector" not in spec, name
        assert meta["labels"][SELECTOR_LABEL] == sel["metadata"]["name"], name
        effect = sel["spec"].get("effect") or {}
        assert {k: str(v) for k, v in (effect.get("annotations") or {}).items()}.items() <= \
            (meta.get("annotations") or {}).items(), name
        assert (effect.get("labels") or {}).items() <= meta["labels"].items(), name


def test_existing_keys_win_with_a_warning(make_harness):
    p = nginx()
    p["metadata"]["annotations"] = {"foo": "mine"}
    p["metadata"]["labels"]["foo"] = "mine"
    result = make_harness(seed("virtual-node-only.yaml")).create(p)
    assert result.object["metadata"]["annotations"] == {"foo": "mine"}
    assert result.object["metadata"]["labels"]["foo"] == "mine"
    assert any("annotation foo" in w and "test-virtual-node-only" in w for w in result.warnings)
    assert any("label foo" in w for w in result.warnings)


def test_reinvocation_is_idempotent(make_harness):
    harness = make_harness(seed("virtual-node-only.yaml"))
    first = harness.create(nginx(nodeSelector={"disk": "ssd"}))
    again = harness.send(review(first.object))
    assert again.patch == [] and again.warnings == []


def test_pod_deletion_cost_seed_value_is_a_string(make_harness):
    sel = seed("fair-pod-deletion-cost.yaml")
    sel["spec"]["policy"] = {"virtualNodeOnly": {}}
    result = make_harness(sel).create(nginx())
    assert result.object["metadata"]["annotations"] == {"controller.kubernetes.io/pod-deletion-cost": "-1000"}


def test_ack_virtual_kubelet_convention_by_configuration(make_harness):
    from framework.testing import namespace, node

    options = {"virtualNodeLabels": {"type": "virtual-kubelet"},
               "virtualNodeTolerations": [
                   {"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "alibabacloud",
                    "effect": "NoSchedule"},
                   {"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoExecute"}]}
    objects = [namespace("default"), node("vk", {"type": "virtual-kubelet"}), node("n1")]
    harness = make_harness(seed("virtual-node-only.yaml"), objects=objects, options=options)
    result = harness.create(nginx())
    assert result.object["spec"]["nodeSelector"] == {"type": "virtual-kubelet"}
    assert result.object["spec"]["tolerations"] == options["virtualNodeTolerations"]


def test_patch_applies_to_the_object_as_received(make_harness):
    sent = review(nginx(nodeSelector={"disk": "ssd"}))
    result = make_harness(seed("virtual-node-only.yaml")).send(sent)
    assert jsonpatch.apply_patch(sent["request"]["object"], result.patch) == result.object


def test_v1beta1_review_answered_in_v1beta1(make_harness):
    result = make_harness(seed("fair.yaml")).send(review(nginx(), api_version="admission.k8s.io/v1beta1"))
    assert result.review["apiVersion"] == "admission.k8s.io/v1beta1"
    assert result.object["spec"]["tolerations"] == [TOLERATION]


def test_bad_options_stop_startup(make_harness):
    import pytest

    from framework.plugins import PluginError

    with pytest.raises(PluginError, match="eci_profile"):
        make_harness(options={"virtualNodeTolerations": [{"key": "x", "operator": "Sometimes"}]})
    with pytest.raises(PluginError, match="unknown option"):
        make_harness(options={"virtualNodeLabel": {"a": "b"}})
