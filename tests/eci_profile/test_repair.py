"""What an outage skipped is restored by the leader: tolerations on pending pods whose Selector adds
them at creation, and the effect's annotations (as well as labels) on pods on virtual nodes."""

from prometheus_client import generate_latest

from framework.testing import pod
from plugins.eci_profile import plugin as eci
from plugins.eci_profile.binding_labels import GIVE_UP_AFTER, BindingLabeler, _Job
from plugins.eci_profile.burst import BurstController

from .conftest import TOLERATION, RecordingKube, default_objects, seed, selector

PATH = "/api/v1/namespaces/default/pods/web"


def admitted_unmutated(name="web", app="nginx", tolerations=None):
    p = pod(name, labels={"app": app})
    p["metadata"].update(resourceVersion="5", uid=f"uid-{name}", creationTimestamp="2027-01-15T08:00:00Z")
    p["status"] = {"phase": "Pending"}
    if tolerations:
        p["spec"]["tolerations"] = tolerations
    return p


def controller(make_harness, sel, *pods, kube):
    harness = make_harness(sel, objects=default_objects() + list(pods), kube=kube)
    return BurstController(eci.profile_of(harness.host))


def test_a_pending_pod_of_a_virtual_node_only_selector_gets_its_tolerations(make_harness):
    kube = RecordingKube()
    ctl = controller(make_harness, seed("virtual-node-only.yaml"), admitted_unmutated(), kube=kube)
    ctl.resync()
    assert ctl.queue.has("default/web")
    ctl.reconcile("default/web")
    (_, path, body), = kube.writes()
    assert path == PATH and body[-1] == {"op": "add", "path": "/spec/tolerations", "value": [TOLERATION]}
    text = generate_latest(ctl.profile.host.metrics.registry).decode()
    assert 'eci_profile_repairs_total{what="tolerations"} 1.0' in text


def test_pods_that_need_nothing_are_not_touched(make_harness):
    kube = RecordingKube()
    fair = controller(make_harness, seed("fair.yaml"), admitted_unmutated(tolerations=[TOLERATION]), kube=kube)
    fair.resync()
    assert not fair.queue.has("default/web")
    for sel in (selector("only", "normalNodeOnly", object_labels={"matchLabels": {"app": "nginx"}}),
                selector("prefer", "normalNodePrefer", object_labels={"matchLabels": {"app": "nginx"}})):
        ctl = controller(make_harness, sel, admitted_unmutated(), kube=kube)
        ctl.resync()  # normalNodePrefer waits for the scheduler's word, normalNodeOnly never tolerates
        assert not ctl.queue.has("default/web")
        ctl.reconcile("default/web")
    assert kube.writes() == []


def test_the_labeller_adds_the_effects_annotations_the_pod_lacks():
    pod_now = pod("web", labels={"app": "web"}, annotations={"team": "mine"})
    pod_now["metadata"].update(uid="u1", resourceVersion="8")
    pod_now["spec"]["nodeName"] = "vk-1"
    kube = RecordingKube({PATH: pod_now})
    job = _Job("default", "web", "u1", "vk-1", {"eci.aliyun.com/selector": "burst"}, until=GIVE_UP_AFTER,
               annotations={"team": "web", "k8s.aliyun.com/eci-with-eip": "true"})
    assert BindingLabeler(kube, clock=lambda: 0.0).attempt(job) == "labelled"
    assert kube.writes() == [("PATCH", PATH, [
        {"op": "test", "path": "/metadata/uid", "value": "u1"},
        {"op": "test", "path": "/spec/nodeName", "value": "vk-1"},
        {"op": "add", "path": "/metadata/labels/eci.aliyun.com~1selector", "value": "burst"},
        {"op": "test", "path": "/metadata/annotations/k8s.aliyun.com~1eci-with-eip", "value": None},
        {"op": "add", "path": "/metadata/annotations/k8s.aliyun.com~1eci-with-eip", "value": "true"}])]
