"""The label PATCH after a binding to a virtual node, against the real API server: a status write
between the pod's read and the PATCH (the node's, right after the binding) does not fail it; a pod
deleted and created again under the same name, or bound elsewhere, fails its tests (422)."""

from __future__ import annotations

import uuid

import pytest

from framework import JSON_PATCH, ApiError, KubeClient
from framework.metrics import Metrics
from plugins.eci_profile.binding_labels import GIVE_UP_AFTER, BindingLabeler, _Job, guarded_patch

LABELS = {"eci.aliyun.com/selector": "burst", "tier": "virtual"}
ANNOTATIONS = {"k8s.aliyun.com/eci-with-eip": "true"}
VIRTUAL = "label-patch-virtual"  # no such Node: nothing runs these pods, nor writes their status but the test


@pytest.fixture(scope="module")
def ns(admin):
    name = f"label-patch-{uuid.uuid4().hex[:5]}"
    admin.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    admin.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def host_kube(host_kubeconfig):
    """A client with the host's own ServiceAccount (deploy/'s RBAC), counting what it sends."""
    kube = KubeClient.from_kubeconfig(str(host_kubeconfig))
    kube.metrics = Metrics()
    return kube


def bound_pod(admin, ns, name, node=VIRTUAL, labels=None) -> dict:
    """A pod bound to ``node`` as the scheduler binds it (no scheduler serves it)."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"schedulerName": "nobody", "containers": [{"name": "main", "image": "nginx"}]}}
    if labels is not None:
        body["metadata"]["labels"] = labels
    admin.post(f"/api/v1/namespaces/{ns}/pods", body)
    admin.post(f"/api/v1/namespaces/{ns}/pods/{name}/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    return admin.get(f"/api/v1/namespaces/{ns}/pods/{name}")


def status_write(admin, ns, name) -> None:
    """What the node writes once it takes the pod: a new resourceVersion, the same pod."""
    admin.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": {"phase": "Pending", "conditions": [
        {"type": "PodReadyToStartContainers", "status": "True"}]}})


def replaced(admin, ns, name) -> None:
    admin.delete(f"/api/v1/namespaces/{ns}/pods/{name}", gracePeriodSeconds=0)
    bound_pod(admin, ns, name, labels={"app": "web"})


def patches(kube, code) -> float:
    return kube.metrics.registry.get_sample_value(
        "admission_host_api_requests_total", {"verb": "PATCH", "resource": "pods", "code": code}) or 0


class Racing:
    """The host's client, with something happening to the pod between its read and the PATCH."""

    def __init__(self, kube, meanwhile):
        self.kube, self.meanwhile = kube, meanwhile

    def get(self, path, **kwargs):
        return self.kube.get(path, **kwargs)

    def patch(self, path, body, **kwargs):
        if self.meanwhile is not None:
            step, self.meanwhile = self.meanwhile, None
            step()
        return self.kube.patch(path, body, **kwargs)


def label(kube, ns, name, uid) -> str:
    """The labeller's tries for one pod, run here one after the other: its outcome."""
    labeler = BindingLabeler(kube, clock=lambda: 0.0)
    job = _Job(ns, name, uid, VIRTUAL, dict(LABELS), until=GIVE_UP_AFTER, annotations=dict(ANNOTATIONS))
    while (outcome := labeler.attempt(job)) is None:
        labeler._due.clear()
    return outcome


def test_a_status_write_after_the_read_does_not_fail_the_label_patch(admin, ns, host_kube):
    read = bound_pod(admin, ns, "web-1", labels={"app": "web"})
    status_write(admin, ns, "web-1")
    path = f"/api/v1/namespaces/{ns}/pods/web-1"
    # The precondition it replaces: the resourceVersion read, which the status write changed.
    with pytest.raises(ApiError) as conflict:
        admin.patch(path, {"metadata": {"resourceVersion": read["metadata"]["resourceVersion"], "labels": LABELS}})
    assert conflict.value.status == 409
    admin.patch(path, guarded_patch(read["metadata"], VIRTUAL, LABELS, ANNOTATIONS), content_type=JSON_PATCH)
    meta = admin.get(path)["metadata"]
    assert meta["labels"] == {"app": "web", **LABELS} and meta["annotations"] == ANNOTATIONS

    # The labeller, with the host's credentials, racing a status write: one PATCH, no conflict.
    read = bound_pod(admin, ns, "web-2", labels={"app": "web"})
    assert label(Racing(host_kube, lambda: status_write(admin, ns, "web-2")), ns, "web-2",
                 read["metadata"]["uid"]) == "labelled"
    assert admin.get(f"/api/v1/namespaces/{ns}/pods/web-2")["metadata"]["labels"] == {"app": "web", **LABELS}
    assert (patches(host_kube, "200"), patches(host_kube, "409"), patches(host_kube, "422")) == (1, 0, 0)


def test_a_pod_with_no_labels_gets_the_whole_map_unless_one_appeared_meanwhile(admin, ns, host_kube):
    read = bound_pod(admin, ns, "bare-1")
    assert "labels" not in read["metadata"] and "annotations" not in read["metadata"]
    assert label(host_kube, ns, "bare-1", read["metadata"]["uid"]) == "labelled"
    meta = admin.get(f"/api/v1/namespaces/{ns}/pods/bare-1")["metadata"]
    assert meta["labels"] == LABELS and meta["annotations"] == ANNOTATIONS
    # Labels and the annotation written by someone else between the read and the PATCH: the PATCH
    # is refused, the pod read again, and labelled without replacing what it got.
    read = bound_pod(admin, ns, "bare-2")
    theirs = {"metadata": {"labels": {"team": "web"}, "annotations": {"k8s.aliyun.com/eci-with-eip": "false"}}}
    racing = Racing(host_kube, lambda: admin.patch(f"/api/v1/namespaces/{ns}/pods/bare-2", theirs))
    assert label(racing, ns, "bare-2", read["metadata"]["uid"]) == "labelled"
    meta = admin.get(f"/api/v1/namespaces/{ns}/pods/bare-2")["metadata"]
    assert meta["labels"] == {"team": "web", **LABELS} and meta["annotations"] == {"k8s.aliyun.com/eci-with-eip": "false"}
    assert patches(host_kube, "422") == 1


def test_the_label_patch_is_refused_for_a_pod_replaced_under_its_name_or_bound_elsewhere(admin, ns, host_kube):
    read = bound_pod(admin, ns, "web-3", labels={"app": "web"})
    replaced(admin, ns, "web-3")  # same name, same node, another uid
    path = f"/api/v1/namespaces/{ns}/pods/web-3"
    with pytest.raises(ApiError) as refused:
        admin.patch(path, guarded_patch(read["metadata"], VIRTUAL, LABELS, {}), content_type=JSON_PATCH)
    assert refused.value.status == 422
    elsewhere = bound_pod(admin, ns, "web-4", node="label-patch-normal", labels={"app": "web"})
    with pytest.raises(ApiError) as refused:
        admin.patch(f"/api/v1/namespaces/{ns}/pods/web-4", guarded_patch(elsewhere["metadata"], VIRTUAL, LABELS, {}),
                    content_type=JSON_PATCH)
    assert refused.value.status == 422
    for name in ("web-3", "web-4"):
        assert admin.get(f"/api/v1/namespaces/{ns}/pods/{name}")["metadata"]["labels"] == {"app": "web"}

    # The labeller: the pod replaced between its read and the PATCH is refused, read again, left alone.
    read = bound_pod(admin, ns, "web-5", labels={"app": "web"})
    assert label(Racing(host_kube, lambda: replaced(admin, ns, "web-5")), ns, "web-5",
                 read["metadata"]["uid"]) == "gone"
    assert admin.get(f"{path[:-len('web-3')]}web-5")["metadata"]["labels"] == {"app": "web"}
    assert (patches(host_kube, "422"), patches(host_kube, "200")) == (1, 0)
