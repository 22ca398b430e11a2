"""pods/binding: the effect lands when the scheduler binds a pod to a virtual node."""

import time

from framework import ApiError
from framework.testing import binding, pod

from plugins.eci_profile import binding_labels, plugin as eci
from plugins.eci_profile.profile import VIRTUAL_PODS, strip_virtual_pod
from tests.unit.fakeapi import wait_for

from .conftest import RecordingKube, default_objects, seed


def pending(name="web", labels=None, annotations=None):
    p = pod(name, labels=labels if labels is not None else {"app": "nginx"}, annotations=annotations)
    p["metadata"].update(resourceVersion="7", uid=f"uid-{name}")
    return p


def stored(kube, name="web", node="vk-1", labels=None):
    """The pod as the API server holds it once the binding is stored."""
    p = pending(name, labels)
    p["spec"]["nodeName"] = node
    p["metadata"]["resourceVersion"] = "8"
    kube.objects[f"/api/v1/namespaces/default/pods/{name}"] = p
    return p


def labelled(kube, count=1):
    """The label PATCHes, once the background thread has sent ``count`` of them."""
    deadline = time.monotonic() + 5
    while len(kube.writes()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return kube.writes()


def labels_patch(**labels):
    """The label PATCH of the pod web: it is that pod, bound to vk-1, when the patch is applied."""
    return ("PATCH", "/api/v1/namespaces/default/pods/web", [
        {"op": "test", "path": "/metadata/uid", "value": "uid-web"},
        {"op": "test", "path": "/spec/nodeName", "value": "vk-1"},
        *({"op": "add", "path": "/metadata/labels/" + k.replace("/", "~1"), "value": v} for k, v in labels.items())])


def older_server(harness):
    """An API server that does not copy a Binding's labels onto the pod (before 1.35), as learned."""
    eci.profile_of(harness.host).labeler.binding_copies = False
    return harness


def outcomes(harness):
    registry = harness.host.metrics.registry
    return {o: registry.get_sample_value("eci_profile_binding_labels_total", {"outcome": o})
            for o in ("withBinding", "labelled") if registry.get_sample_value(
                "eci_profile_binding_labels_total", {"outcome": o})}


def test_binding_to_virtual_node_carries_the_effect_and_the_api_server_copies_it(make_harness, monkeypatch):
    monkeypatch.setattr(binding_labels, "CONFIRM_AFTER", 0.0)
    kube = RecordingKube()
    harness = make_harness(seed("fair.yaml"), objects=default_objects() + [pending()], kube=kube)
    effect = {"foo": "boo", "eci.aliyun.com/selector": "test-fair"}
    # The API server copies both onto the pod as it binds (1.35+); the watch of virtual pods shows it.
    harness.host.store(VIRTUAL_PODS).upsert(strip_virtual_pod(stored(RecordingKube(), labels={"app": "nginx",
                                                                                               **effect})))
    result = harness.create(binding("web", "vk-1"))
    assert result.object["metadata"]["annotations"] == {"foo": "boo"}
    assert result.object["metadata"]["labels"] == effect
    wait_for(lambda: outcomes(harness) == {"withBinding": 1.0})
    assert kube.calls == [] and eci.profile_of(harness.host).labeler.binding_copies is True
    assert result.audit_annotations == {"selector": "test-fair"}


def test_an_api_server_that_does_not_copy_a_bindings_labels_gets_them_by_patch_from_then_on(make_harness,
                                                                                          monkeypatch):
    monkeypatch.setattr(binding_labels, "CONFIRM_AFTER", 0.0)
    kube = RecordingKube()
    harness = make_harness(seed("fair.yaml"), objects=default_objects() + [pending(), pending("api")], kube=kube)
    stored(kube)  # bound, without the Binding's labels
    harness.create(binding("web", "vk-1"))
    assert labelled(kube) == [labels_patch(**{"foo": "boo", "eci.aliyun.com/selector": "test-fair"})]
    assert [c[0] for c in kube.calls] == ["GET", "PATCH"]  # not in the watch: read, then sent
    assert eci.profile_of(harness.host).labeler.binding_copies is False
    # Learned: the next binding carries no labels, and they are sent without reading the pod first.
    stored(kube, "api")
    assert "labels" not in harness.create(binding("api", "vk-1")).object["metadata"]
    labelled(kube, 2)
    assert [c[0] for c in kube.calls] == ["GET", "PATCH", "PATCH"]


def test_binding_to_virtual_node_on_an_older_server_labels_the_pod_once_bound(make_harness):
    kube = RecordingKube()
    harness = older_server(make_harness(seed("fair.yaml"), objects=default_objects() + [pending()], kube=kube))
    stored(kube)
    result = harness.create(binding("web", "vk-1"))
    assert result.object["metadata"]["annotations"] == {"foo": "boo"}
    # Off the admission path, once the binding is stored; only if it is still that pod, bound there.
    assert labelled(kube) == [labels_patch(**{"foo": "boo", "eci.aliyun.com/selector": "test-fair"})]
    assert [c[0] for c in kube.calls] == ["PATCH"]  # the pod had labels: sent without reading it


def test_binding_to_normal_node_changes_nothing(make_harness):
    kube = RecordingKube()
    harness = make_harness(seed("fair.yaml"), objects=default_objects() + [pending()], kube=kube)
    result = harness.create(binding("web", "normal-1"))
    assert result.patch == [] and kube.writes() == []


def test_dry_run_binding_has_no_side_effects(make_harness):
    kube = RecordingKube()
    harness = make_harness(seed("fair.yaml"), objects=default_objects() + [pending()], kube=kube)
    result = harness.create(binding("web", "vk-1"), dry_run=True)
    assert result.object["metadata"]["annotations"] == {"foo": "boo"}
    assert kube.writes() == []


def test_pod_deletion_cost_only_on_pods_bound_to_virtual_nodes(make_harness):
    objects = default_objects() + [pending("a"), pending("b")]
    harness = make_harness(seed("fair-pod-deletion-cost.yaml"), objects=objects, kube=RecordingKube())
    to_virtual = harness.create(binding("a", "vk-1")).object
    to_normal = harness.create(binding("b", "normal-1")).object
    assert to_virtual["metadata"]["annotations"] == {"controller.kubernetes.io/pod-deletion-cost": "-1000"}
    assert "annotations" not in to_normal["metadata"]


def test_keys_the_pod_has_are_not_overwritten_by_binding(make_harness):
    kube = RecordingKube()
    objects = default_objects() + [pending(labels={"app": "nginx", "foo": "x"}, annotations={"foo": "x"})]
    stored(kube, labels={"app": "nginx", "foo": "x"})
    result = older_server(make_harness(seed("fair.yaml"), objects=objects, kube=kube)).create(binding("web", "vk-1"))
    assert "annotations" not in result.object["metadata"]
    # Only the label the counts work from: foo keeps the pod's own value.
    assert labelled(kube) == [labels_patch(**{"eci.aliyun.com/selector": "test-fair"})]
    assert any("label foo" in w for w in result.warnings)


def test_cache_miss_falls_back_to_one_get(make_harness):
    kube = RecordingKube({"/api/v1/namespaces/default/pods/late": pending("late")})
    harness = make_harness(seed("fair.yaml"), kube=kube)
    result = harness.create(binding("late", "vk-1"))
    assert result.object["metadata"]["annotations"] == {"foo": "boo"}
    assert ("GET", "/api/v1/namespaces/default/pods/late", None) in kube.calls


def test_a_label_patch_that_fails_is_tried_again_off_the_admission_path(make_harness):
    kube = RecordingKube(fail_patch=ApiError(500, "boom"))
    harness = older_server(make_harness(seed("fair.yaml"), objects=default_objects() + [pending()], kube=kube))
    stored(kube)
    result = harness.create(binding("web", "vk-1"))
    assert result.allowed and not result.warnings
    assert result.object["metadata"]["annotations"] == {"foo": "boo"}
    first, second = labelled(kube, 2)
    assert first == second  # the same PATCH, the second time accepted


def test_unknown_pod_is_left_alone(make_harness):
    result = make_harness(seed("fair.yaml"), kube=RecordingKube()).create(binding("ghost", "vk-1"))
    assert result.allowed and result.patch == []


def test_a_watch_behind_is_waited_for_once_the_api_server_is_known_to_copy_the_labels(make_harness, monkeypatch):
    monkeypatch.setattr(binding_labels, "CONFIRM_AFTER", 0.05)
    kube = RecordingKube()
    harness = make_harness(seed("fair.yaml"), objects=default_objects() + [pending()], kube=kube)
    eci.profile_of(harness.host).labeler.binding_copies = True
    harness.create(binding("web", "vk-1"))
    time.sleep(0.12)  # two looks: not in the watch yet
    harness.host.store(VIRTUAL_PODS).upsert(strip_virtual_pod(stored(RecordingKube(), labels={
        "app": "nginx", "foo": "boo", "eci.aliyun.com/selector": "test-fair"})))
    wait_for(lambda: outcomes(harness) == {"withBinding": 1.0})
    assert kube.calls == []  # never read, never sent
