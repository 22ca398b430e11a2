"""The normalNodePrefer burst controller's decisions (the real scheduler is in tests/e2e)."""

from framework import ApiError
from framework.testing import pod
from plugins.eci_profile import plugin as eci
from plugins.eci_profile.burst import BurstController

from .conftest import TOLERATION, RecordingKube, default_objects, seed, selector


def unschedulable(name="web", labels=None, tolerations=None, rv="5"):
    p = pod(name, labels=labels if labels is not None else {"app": "nginx"})
    p["metadata"].update(resourceVersion=rv, uid=f"uid-{name}")
    if tolerations:
        p["spec"]["tolerations"] = tolerations
    p["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    return p


def controller(make_harness, *objects, kube, sel=None):
    harness = make_harness(sel or seed("normal-node-prefer.yaml"), objects=default_objects() + list(objects), kube=kube)
    return BurstController(eci.profile_of(harness.host))


def test_unschedulable_normal_node_prefer_pod_gets_tolerations(make_harness):
    kube = RecordingKube()
    controller(make_harness, unschedulable(), kube=kube).reconcile("default/web")
    (method, path, body), = kube.writes()
    assert path == "/api/v1/namespaces/default/pods/web"
    assert body[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "5"}
    assert body[1] == {"op": "add", "path": "/spec/tolerations", "value": [TOLERATION]}
    event = kube.writes("POST")[0][2]
    assert event["reason"] == "BurstToVirtualNode" and "test-normal-node-prefer" in event["message"]


def test_pod_that_already_tolerates_is_left_alone(make_harness):
    kube = RecordingKube()
    controller(make_harness, unschedulable(tolerations=[TOLERATION]), kube=kube).reconcile("default/web")
    assert kube.writes() == []


def test_schedulable_or_other_policies_are_left_alone(make_harness):
    kube = RecordingKube()
    p = unschedulable()
    p["status"]["conditions"][0]["status"] = "True"
    controller(make_harness, p, kube=kube).reconcile("default/web")
    controller(make_harness, unschedulable(), kube=kube,
               sel=selector("only", "normalNodeOnly")).reconcile("default/web")
    assert kube.writes() == []


def test_conflict_rereads_and_retries_once(make_harness):
    fresh = unschedulable(rv="9", tolerations=[{"key": "other", "operator": "Exists"}])
    kube = RecordingKube({"/api/v1/namespaces/default/pods/web": fresh}, fail_patch=ApiError(422, "test failed"))
    controller(make_harness, unschedulable(), kube=kube).reconcile("default/web")
    patches = kube.writes()
    assert len(patches) == 2
    assert patches[1][2][0]["value"] == "9"
    assert patches[1][2][1]["value"] == [{"key": "other", "operator": "Exists"}, TOLERATION]


def test_gone_pod_is_dropped(make_harness):
    kube = RecordingKube(fail_patch=ApiError(404, "gone"))
    controller(make_harness, unschedulable(), kube=kube).reconcile("default/web")
    assert len(kube.writes()) == 1 and kube.writes("POST") == []
