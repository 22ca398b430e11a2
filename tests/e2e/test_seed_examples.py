"""The original README's Selector examples, applied with kubectl exactly as written."""

import pytest

from tests.e2e.conftest import TOLERATION
from tests.e2e.host import REPO

EXAMPLES = REPO / "deploy" / "examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_seed_example_applies_and_is_valid(k8s, name):
    applied = k8s.apply_selector(EXAMPLES / name)
    assert applied["apiVersion"] == "eci.aliyun.com/v1beta1"
    seen = k8s.wait_selector_seen(applied["metadata"]["name"])
    valid = next(c for c in seen["status"]["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "True", valid


def test_unquoted_pod_deletion_cost_lands_as_a_string(k8s):
    ns = k8s.namespace()
    normal, virtual = k8s.node(), k8s.node("virtual")
    sel = k8s.apply_selector(EXAMPLES / "fair-pod-deletion-cost.yaml")
    # The API server keeps the integer as written; the host applies it as a string.
    assert sel["spec"]["effect"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == -1000
    pod = k8s.pod("web", ns, labels={"app": "nginx"}, node_selector={"kubernetes.io/hostname": virtual})
    assert TOLERATION in pod["spec"]["tolerations"]
    bound = k8s.wait_bound(ns, "web")
    assert bound["spec"]["nodeName"] == virtual
    assert bound["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == "-1000"
    # The same Selector's pod on the normal node gets no cost: the effect is for virtual nodes only.
    k8s.pod("web-normal", ns, labels={"app": "nginx"}, node_selector={"kubernetes.io/hostname": normal})
    on_normal = k8s.wait_bound(ns, "web-normal")
    assert on_normal["spec"]["nodeName"] == normal and not k8s.is_virtual(normal), on_normal["spec"]["nodeName"]
    assert TOLERATION in on_normal["spec"]["tolerations"]
    assert "controller.kubernetes.io/pod-deletion-cost" not in (on_normal["metadata"].get("annotations") or {})
