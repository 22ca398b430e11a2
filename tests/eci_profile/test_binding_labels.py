"""The labels of a pod bound to a virtual node: added once the binding is stored, to that pod only."""

from framework import JSON_PATCH, ApiError
from framework.testing import pod
from plugins.eci_profile.binding_labels import FIRST_RETRY, GIVE_UP_AFTER, BindingLabeler, _Job, guarded_patch
from plugins.eci_profile.plugin import profile_of

from tests.unit.fakeapi import wait_for

from .conftest import RecordingKube

PATH = "/api/v1/namespaces/default/pods/web"
LABELS = {"eci.aliyun.com/selector": "burst", "tier": "virtual"}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def stored(node="", uid="u1", labels=None, version="8"):
    p = pod("web", labels=labels if labels is not None else {"app": "web"})
    p["metadata"].update(uid=uid, resourceVersion=version)
    if node:
        p["spec"]["nodeName"] = node
    return p


# What every label PATCH starts with: it is that pod, and it is bound there, when the patch is applied.
GUARD = [{"op": "test", "path": "/metadata/uid", "value": "u1"},
         {"op": "test", "path": "/spec/nodeName", "value": "vk-1"}]


def labels_added(**labels):
    return GUARD + [{"op": "add", "path": "/metadata/labels/" + k.replace("/", "~1"), "value": v}
                    for k, v in labels.items()]


class JsonPatchKube(RecordingKube):
    def patch(self, path, body, content_type=None, timeout=None, **query):
        assert content_type == JSON_PATCH
        return super().patch(path, body, content_type, timeout, **query)


def labeler(kube, clock):
    outcomes, failures = [], []
    lab = BindingLabeler(kube, outcome=outcomes.append, failed=lambda meta, why: failures.append((meta, why)),
                         clock=clock)
    return lab, outcomes, failures


def job(clock):
    return _Job("default", "web", "u1", "vk-1", dict(LABELS), until=clock() + GIVE_UP_AFTER)


def test_waits_until_the_binding_is_stored_then_patches_with_a_precondition():
    clock, kube = Clock(), JsonPatchKube({PATH: stored()})
    lab, outcomes, _ = labeler(kube, clock)
    j = job(clock)
    assert lab.attempt(j) is None and lab.pending() == 1  # not bound yet: tried again later
    assert j.delay == 2 * FIRST_RETRY and kube.writes() == []
    kube.objects[PATH] = stored(node="vk-1")
    assert lab.attempt(j) == "labelled"
    assert kube.writes() == [("PATCH", PATH, labels_added(**LABELS))]
    assert outcomes == ["labelled"]


def test_a_pod_that_had_labels_is_patched_without_being_read_and_read_only_when_refused():
    """The binding is stored a moment after the webhook answers: the first try is the PATCH alone
    (its tests say whether it is that pod, bound there). Refused, the pod is read to tell why."""
    clock, kube = Clock(), JsonPatchKube({PATH: stored(node="vk-1")})
    lab, outcomes, _ = labeler(kube, clock)
    blind = _Job("default", "web", "u1", "vk-1", dict(LABELS), until=clock() + GIVE_UP_AFTER, blind=True)
    assert lab.attempt(blind) == "labelled"
    assert kube.calls == [("PATCH", PATH, labels_added(**LABELS))]  # one call, no GET

    kube = JsonPatchKube({PATH: stored()}, fail_patch=ApiError(422, "the test of /spec/nodeName failed"))
    lab, outcomes, _ = labeler(kube, clock)
    blind = _Job("default", "web", "u1", "vk-1", dict(LABELS), until=clock() + GIVE_UP_AFTER, blind=True)
    assert lab.attempt(blind) is None and [c[0] for c in kube.calls] == ["PATCH", "GET"]  # not bound yet
    kube.objects[PATH] = stored(node="vk-1")
    assert lab.attempt(blind) == "labelled" and [c[0] for c in kube.calls] == ["PATCH", "GET", "GET", "PATCH"]


def test_the_precondition_is_the_pod_and_its_node_not_its_resource_version():
    """A status write between the read and the PATCH changes the resourceVersion, not the pod's uid
    or node: the PATCH tests those two only. Where the pod has no labels at all, the whole map is
    added, unless one appeared meanwhile (which the PATCH would otherwise replace)."""
    bare = stored(node="vk-1", labels={})
    del bare["metadata"]["labels"]
    assert "resourceVersion" not in str(guarded_patch(bare["metadata"], "vk-1", LABELS, {}))
    assert guarded_patch(bare["metadata"], "vk-1", LABELS, {"a/b": "c"}) == GUARD + [
        {"op": "test", "path": "/metadata/labels", "value": None},
        {"op": "add", "path": "/metadata/labels", "value": LABELS},
        {"op": "test", "path": "/metadata/annotations", "value": None},
        {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}}]


def test_a_pod_bound_elsewhere_replaced_or_deleted_is_left_alone():
    clock = Clock()
    for current, outcome in ((stored(node="normal-1"), "elsewhere"), (stored(node="vk-1", uid="u2"), "gone"),
                             (None, "gone")):
        kube = RecordingKube({PATH: current} if current else {})
        lab, outcomes, _ = labeler(kube, clock)
        assert lab.attempt(job(clock)) == outcome
        assert kube.writes() == [] and outcomes == [outcome] and lab.pending() == 0


def test_labels_the_pod_has_are_not_sent_again():
    clock = Clock()
    kube = RecordingKube({PATH: stored(node="vk-1", labels={"app": "web", "tier": "virtual"})})
    lab, _, _ = labeler(kube, clock)
    assert lab.attempt(job(clock)) == "labelled"
    assert kube.writes() == [("PATCH", PATH, labels_added(**{"eci.aliyun.com/selector": "burst"}))]
    kube = RecordingKube({PATH: stored(node="vk-1", labels={"app": "web", **LABELS})})
    lab, _, _ = labeler(kube, clock)
    assert lab.attempt(job(clock)) == "labelled" and kube.writes() == []


def test_a_conflict_reads_the_pod_again_at_once():
    clock = Clock()
    kube = RecordingKube({PATH: stored(node="vk-1")}, fail_patch=ApiError(409, "the object has been modified"))
    lab, outcomes, _ = labeler(kube, clock)
    j = job(clock)
    assert lab.attempt(j) is None
    assert lab._due[0][0] == clock.now and j.delay == FIRST_RETRY  # no back-off for a conflict
    assert lab.attempt(j) == "labelled" and len(kube.writes()) == 2


def test_a_failed_test_reads_the_pod_again_which_says_where_it_went():
    """A JSON patch whose test fails is refused with 422: replaced or bound elsewhere meanwhile."""
    clock = Clock()
    for now, outcome in ((stored(node="vk-1", uid="u2"), "gone"), (stored(node="normal-1"), "elsewhere"),
                         (None, "gone")):
        kube = RecordingKube({PATH: stored(node="vk-1")}, fail_patch=ApiError(422, "testing value failed"))
        lab, outcomes, _ = labeler(kube, clock)
        j = job(clock)
        assert lab.attempt(j) is None and lab._due[0][0] == clock.now  # read again at once
        kube.objects.pop(PATH)
        if now is not None:
            kube.objects[PATH] = now
        assert lab.attempt(j) == outcome and outcomes == [outcome] and len(kube.writes()) == 1


def test_gives_up_with_an_event_when_the_binding_never_comes():
    clock = Clock()
    kube = RecordingKube({PATH: stored()})
    lab, outcomes, failures = labeler(kube, clock)
    j = job(clock)
    tries = 0
    while (result := lab.attempt(j)) is None:
        tries += 1
        clock.now = lab._due[-1][0] if lab._due else clock.now
        lab._due.clear()
    assert result == "failed" and outcomes == ["failed"] and tries > 5
    assert clock.now - 100.0 <= GIVE_UP_AFTER
    (meta, why), = failures
    assert meta == {"name": "web", "namespace": "default", "uid": "u1"} and why == "not bound yet"
    assert kube.writes() == []


def test_a_stopping_host_waits_a_moment_for_the_last_labels():
    kube = RecordingKube({PATH: stored(node="vk-1")})
    lab = BindingLabeler(kube)
    lab.label("default", "web", "u1", "vk-1", LABELS)  # the real thread and clock
    assert lab.drain(5.0) == 0 and len(kube.writes()) == 1
    never = RecordingKube({PATH: stored()})  # a binding that is never stored
    lab = BindingLabeler(never)
    lab.label("default", "web", "u1", "vk-1", LABELS)
    assert lab.drain(0.3) == 1 and never.writes() == []


def test_one_job_a_pod_while_it_is_not_over():
    """The sweep may find a pod again before its labels went out: that is not a second job."""
    clock, kube = Clock(), RecordingKube({PATH: stored()})
    lab, outcomes, _ = labeler(kube, clock)
    lab.label("default", "web", "u1", "vk-1", LABELS)
    wait_for(lambda: kube.calls)  # not bound yet: tried again later
    lab.label("default", "web", "u1", "vk-1", LABELS)
    assert lab.pending() == 1
    lab.label("default", "web", "u1", "vk-2", LABELS)  # bound again, elsewhere: a job of its own
    assert lab.pending() == 2
    kube.objects[PATH] = stored(node="vk-1")
    clock.now += 1
    wait_for(lambda: sorted(outcomes) == ["elsewhere", "labelled"] and lab.pending() == 0)
    kube.objects[PATH] = stored(node="vk-1", labels={"app": "web", **LABELS})
    lab.label("default", "web", "u1", "vk-1", LABELS)  # over: a new job may start
    wait_for(lambda: sorted(outcomes) == ["elsewhere", "labelled", "labelled"])
    assert len(kube.writes()) == 1  # the labels were there the second time


def test_labels_given_up_on_are_told_on_the_pod_with_a_virtual_node_labels_failed_event(make_harness):
    kube = RecordingKube({PATH: stored()})  # the binding is never stored
    labeler = profile_of(make_harness(kube=kube).host).labeler
    over = _Job("default", "web", "u1", "vk-1", dict(LABELS), until=0.0)  # its time is up
    assert labeler.attempt(over) == "failed"
    event = wait_for(lambda: next(iter(kube.writes("POST")), None))[2]
    assert event["reason"] == "VirtualNodeLabelsFailed" and event["type"] == "Warning"
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "default",
                                       "uid": "u1"}
    assert "not bound yet" in event["message"] and kube.writes() == []
