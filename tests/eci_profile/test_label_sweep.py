"""Pods on virtual nodes without their Selector's labels get them later (the labels of a binding
that were lost, or never given; the effect of a pod created there while no replica answered), but
only pods a Selector matches now and may change."""

import threading

import pytest

from plugins.eci_profile.cap import SELECTOR_LABEL
from plugins.eci_profile.label_sweep import LabelSweepController
from plugins.eci_profile.plugin import profile_of
from plugins.eci_profile.settings import Options, Settings

from .conftest import VNODE, RecordingKube, selector

CREATOR = {"manager": "kube-controller-manager", "operation": "Update", "fieldsType": "FieldsV1",
           "fieldsV1": {"f:spec": {"f:containers": {}, "f:schedulerName": {}}}}


def on_node(name, node="vk-1", labels=None, created_with_node=False, **meta):
    """A pod as the API server lists it: bound by a binding (no owner of spec.nodeName), or
    created with spec.nodeName (its creator owns it)."""
    creator = {**CREATOR, "fieldsV1": {"f:spec": {**CREATOR["fieldsV1"]["f:spec"], "f:nodeName": {}}}} \
        if created_with_node else CREATOR
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "labels": labels if labels is not None else {"app": "web"},
                         "managedFields": [creator], **meta},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}}


class ListingKube(RecordingKube):
    """Lists pods by node and without the Selector label, a page of ``page`` at a time."""

    def __init__(self, pods, page=500):
        super().__init__()
        self.pods, self.page = pods, page
        self.lists = []

    def get(self, path, timeout=None, **query):
        if path != "/api/v1/pods":
            return super().get(path, timeout, **query)
        self.lists.append(dict(query))
        assert query["labelSelector"] == f"!{SELECTOR_LABEL}"
        node = query["fieldSelector"].removeprefix("spec.nodeName=")
        found = [p for p in self.pods if p["spec"]["nodeName"] == node and SELECTOR_LABEL not in p["metadata"]["labels"]]
        start = int(query.get("continue") or 0)
        rest = start + min(self.page, query["limit"])
        return {"items": found[start:rest], "metadata": {"continue": str(rest) if rest < len(found) else ""}}


class Handed:
    """Stands in for the labeller: what the sweep hands it."""

    def __init__(self):
        self.jobs = []

    def label(self, namespace, name, uid, node, labels, annotations=None):
        self.jobs.append((f"{namespace}/{name}", uid, node, labels))
        self.annotations = getattr(self, "annotations", []) + [annotations]


@pytest.fixture
def sweep(make_harness):
    def make(pods, page=500, sel=None):
        kube = ListingKube(pods, page)
        harness = make_harness(sel or selector("burst", object_labels={"matchLabels": {"app": "web"}},
                                               labels={"tier": "virtual", "app": "other"}), kube=kube)
        profile = profile_of(harness.host)
        profile.labeler = handed = Handed()
        return LabelSweepController(profile), kube, handed
    return make


def test_a_bound_pod_without_the_label_gets_the_labels_its_binding_would_have_given(sweep):
    ctl, kube, handed = sweep([on_node("web-1"), on_node("web-2", labels={"app": "web", SELECTOR_LABEL: "burst"}),
                               on_node("on-normal", node="normal-1")])
    assert ctl.step() == 1
    # The pod's own app label is kept; the Selector's name is what the caps and drain-back count by.
    assert handed.jobs == [("default/web-1", "uid-web-1", "vk-1", {"tier": "virtual", SELECTOR_LABEL: "burst"})]
    assert [q["fieldSelector"] for q in kube.lists] == ["spec.nodeName=vk-1"]  # virtual nodes only


def test_pods_the_host_must_not_touch_are_left_alone(sweep):
    ds = [{"kind": "DaemonSet", "name": "agent", "uid": "d1", "controller": True}]
    ctl, _, handed = sweep([
        on_node("daemon", ownerReferences=ds),
        on_node("deleting", deletionTimestamp="2026-11-29T10:00:00Z"),
        on_node("no-match", labels={"app": "db"}),
        {**on_node("done"), "status": {"phase": "Succeeded"}},
    ])
    assert ctl.step() == 0 and handed.jobs == []


def test_every_page_of_a_node_is_read(sweep):
    ctl, kube, handed = sweep([on_node(f"web-{i}") for i in range(5)], page=2)
    assert ctl.step() == 5 and len(kube.lists) == 3
    assert sorted(j[0] for j in handed.jobs) == [f"default/web-{i}" for i in range(5)]


def test_a_pod_created_on_a_virtual_node_without_the_effect_gets_it_like_a_bound_one(sweep):
    ctl, _, handed = sweep([on_node("created-on-node", created_with_node=True)])
    assert ctl.step() == 1
    assert handed.jobs == [("default/created-on-node", "uid-created-on-node", "vk-1",
                            {"tier": "virtual", SELECTOR_LABEL: "burst"})]


def test_the_interval_is_an_option_and_zero_turns_the_sweep_off(sweep):
    assert Settings.from_options(Options()).label_sweep_interval == 60
    assert Settings.from_options(Options(label_sweep_interval="15s")).label_sweep_interval == 15
    with pytest.raises(ValueError, match="labelSweepInterval"):
        Options(label_sweep_interval="often")
    ctl, kube, _ = sweep([on_node("web-1")])
    ctl.interval = 0
    done = threading.Event()
    threading.Thread(target=lambda: (ctl.run(threading.Event()), done.set()), daemon=True).start()
    assert done.wait(5) and kube.lists == []


def test_the_effects_annotations_come_back_too_but_never_over_the_pods_own(sweep):
    sel = selector("burst", object_labels={"matchLabels": {"app": "web"}}, labels={"tier": "virtual"},
                   annotations={"k8s.aliyun.com/eci-with-eip": "true", "team": "web"})
    sel["spec"]["scaleIn"] = "VirtualFirst"
    ctl, _, handed = sweep([on_node("web-1", annotations={"team": "mine"})], sel=sel)
    assert ctl.step() == 1
    assert handed.annotations == [{"k8s.aliyun.com/eci-with-eip": "true",
                                   "controller.kubernetes.io/pod-deletion-cost": "-1000"}]
    text = __import__("prometheus_client").generate_latest(ctl.profile.host.metrics.registry).decode()
    assert 'eci_profile_repairs_total{what="effect"} 1.0' in text
