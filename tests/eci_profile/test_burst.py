"""The normalNodePrefer burst controller's decisions (the real scheduler is in tests/e2e)."""

import threading

from framework import ApiError
from framework.testing import pod
from plugins.eci_profile import plugin as eci
from plugins.eci_profile.burst import BurstController
from plugins.eci_profile.profile import SELECTORS, VIRTUAL_PODS

from tests.unit.fakeapi import wait_for

from .conftest import TOLERATION, RecordingKube, default_objects, seed, selector
from .test_burst_engine import capped, on_virtual


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
    # Still the pod cached, unbound, with the tolerations cached; a status write in between fails nothing.
    assert body[:3] == [{"op": "test", "path": "/metadata/uid", "value": "uid-web"},
                        {"op": "test", "path": "/spec/nodeName", "value": None},
                        {"op": "test", "path": "/spec/tolerations", "value": None}]
    assert body[3] == {"op": "add", "path": "/spec/tolerations", "value": [TOLERATION]}
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
    # Decided again on the pod as it is now: its tolerations are the ones tested and kept.
    assert patches[1][2][2]["value"] == [{"key": "other", "operator": "Exists"}]
    assert patches[1][2][-1]["value"] == [{"key": "other", "operator": "Exists"}, TOLERATION]


def test_gone_pod_is_dropped(make_harness):
    kube = RecordingKube(fail_patch=ApiError(404, "gone"))
    controller(make_harness, unschedulable(), kube=kube).reconcile("default/web")
    assert len(kube.writes()) == 1 and kube.writes("POST") == []


def capped_prefer(cap):
    sel = capped(cap)
    sel["spec"]["policy"] = {"normalNodePrefer": {}}
    return sel


def test_a_burst_past_the_selectors_cap_waits_for_a_free_place(make_harness):
    kube = RecordingKube()
    ctl = controller(make_harness, unschedulable(), on_virtual("a", "capped"), kube=kube, sel=capped_prefer(1))
    ctl.reconcile("default/web")
    assert kube.writes() == []  # 1 of 1 on virtual nodes: no tolerations
    assert ctl.waiting_count("capped") == 1 and ctl.queue.waiting() == 1  # and looked at again later
    registry = ctl.profile.host.metrics.registry
    assert registry.get_sample_value("eci_profile_cap_denials_total", {"selector": "capped", "phase": "burst"}) == 1
    event = wait_for(lambda: next(iter(kube.writes("POST")), None))[2]
    assert event["reason"] == "BurstDelayed" and "maxVirtualPods 1 reached" in event["message"]
    ctl.profile.host.store(VIRTUAL_PODS).delete("default/a")  # a place comes free
    ctl.reconcile("default/web")
    (method, path, body), = kube.writes()
    assert body[-1] == {"op": "add", "path": "/spec/tolerations", "value": [TOLERATION]}
    assert ctl.waiting_count("capped") == 0


def test_a_new_selector_looks_again_at_the_unschedulable_pods(make_harness):
    kube = RecordingKube()
    ctl = controller(make_harness, unschedulable(labels={"app": "web"}), pod("fits", labels={"app": "web"}),
                     kube=kube)  # the seed Selector wants app=nginx: no Selector wants them
    ctl.active = True
    ctl.reconcile("default/web")
    assert kube.writes() == [] and len(ctl.queue) == 0
    wants_web = selector("web", "normalNodePrefer", object_labels={"matchLabels": {"app": "web"}})
    ctl.profile.host.store(SELECTORS).upsert(ctl.profile.compile_selector(wants_web))
    assert len(ctl.queue) == 1  # the Unschedulable pod, not the one waiting for the scheduler
    handled, stop = [], threading.Event()

    def once(key):
        handled.append(key)
        ctl.reconcile(key)
        stop.set()

    ctl.queue.run(stop, once)
    assert handled == ["default/web"]
    (method, path, body), = kube.writes()
    assert path == "/api/v1/namespaces/default/pods/web" and body[-1]["value"] == [TOLERATION]
