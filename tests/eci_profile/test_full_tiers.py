"""A tier the scheduler just found full for a workload: its next pods skip the try that would fail
(full_tiers.py). The real scheduler's side, and the guarantee that a normal node with room still
wins, are in tests/e2e/test_burst_engine.py."""

from framework.testing import node, pod
from plugins.eci_profile import plugin as eci
from plugins.eci_profile.burst import BurstController
from plugins.eci_profile.full_tiers import FULL_FOR, FullTiers
from plugins.eci_profile.profile import NODES, OPENED_AT_CREATION, PENDING_PODS, strip_node, strip_pod

from .conftest import TOLERATION, RecordingKube, default_objects, seed, selector
from .test_burst import capped_prefer, unschedulable

NOT_VIRTUAL = {"matchExpressions": [{"key": "k8s.aliyun.com/vnode", "operator": "NotIn", "values": ["true"]}]}


def owned(p: dict, owner: str = "rs-1") -> dict:
    p["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                         "uid": owner, "controller": True}]
    return p


def sibling_found_unschedulable(harness, name="web-0", owner="rs-1"):
    harness.host.store(PENDING_PODS).upsert(strip_pod(owned(unschedulable(name), owner)))


def decisions(harness, reason):
    return harness.host.metrics.registry.get_sample_value("eci_profile_burst_decisions_total", {"reason": reason})


def created(harness, name="web-1", owner="rs-1"):
    p = pod(name, labels={"app": "nginx"})
    return harness.create(owned(p, owner) if owner else p).object


def test_full_tiers_are_believed_for_a_while_and_forgotten_when_a_node_changes():
    now = [100.0]
    full = FullTiers(clock=lambda: now[0])
    assert full.saw_unschedulable("s", 0, "rs") is True
    assert full.saw_unschedulable("s", 0, "rs") is False  # not news
    assert full.full("s", 0, "rs") and not full.full("s", 0, "other") and not full.full("s", 1, "rs")
    assert not full.saw_unschedulable("s", 0, "") and not full.full("s", 0, "")  # a pod of its own: no siblings
    now[0] += FULL_FOR
    assert not full.full("s", 0, "rs")
    full.saw_unschedulable("s", 0, "rs")
    full.forget()
    assert not full.full("s", 0, "rs")


def test_a_sibling_created_after_one_was_found_unschedulable_may_use_virtual_nodes_preferring_normal_ones(
        make_harness):
    harness = make_harness(seed("normal-node-prefer.yaml"))
    before = created(harness, "web-early")
    assert TOLERATION not in (before["spec"].get("tolerations") or ())  # nothing known yet: the usual path
    sibling_found_unschedulable(harness)
    obj = created(harness)
    assert TOLERATION in obj["spec"]["tolerations"]
    assert obj["metadata"]["annotations"][OPENED_AT_CREATION] == "virtual"
    assert obj["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == [
        {"weight": 100, "preference": NOT_VIRTUAL}]
    # Another workload's pods, and a pod of its own, are not its siblings.
    for other in (created(harness, "db-1", owner="rs-2"), created(harness, "lone", owner=None)):
        assert TOLERATION not in (other["spec"].get("tolerations") or ())
    assert decisions(harness, "openedAtCreation") == 1


def test_a_normal_node_added_or_changed_means_the_tier_must_be_found_full_again(make_harness):
    harness = make_harness(seed("normal-node-prefer.yaml"))
    sibling_found_unschedulable(harness)
    harness.host.store(NODES).upsert(strip_node(node("vk-2", {"k8s.aliyun.com/vnode": "true"})))
    assert TOLERATION in created(harness, "web-1")["spec"]["tolerations"]  # a virtual node brings no normal room
    harness.host.store(NODES).upsert(strip_node(node("normal-2")))
    assert TOLERATION not in (created(harness, "web-2")["spec"].get("tolerations") or ())


def test_the_word_is_not_believed_past_full_for(make_harness):
    harness = make_harness(seed("normal-node-prefer.yaml"))
    full = eci.profile_of(harness.host).full_tiers
    now = [0.0]
    full.clock = lambda: now[0]
    sibling_found_unschedulable(harness)
    now[0] += FULL_FOR + 0.1
    assert TOLERATION not in (created(harness)["spec"].get("tolerations") or ())


def test_rules_that_hold_a_pod_back_keep_its_siblings_on_the_usual_path(make_harness):
    """burstAfter, waitForAutoscaler, normalNodeOnly: the pod does not move on at once, nor do they."""
    for policy in ({"normalNodePrefer": {"burstAfter": "30s"}}, {"normalNodePrefer": {"waitForAutoscaler": True}},
                   {"normalNodeOnly": {}}):
        sel = selector("held", "fair", object_labels={"matchLabels": {"app": "nginx"}})
        sel["spec"]["policy"] = policy
        harness = make_harness(sel)
        sibling_found_unschedulable(harness)
        assert TOLERATION not in (created(harness)["spec"].get("tolerations") or ()), policy


def test_a_capped_tier_is_not_opened_at_creation(make_harness):
    """Only the burst controller counts the pods it let in before they are bound: a cap stays exact."""
    harness = make_harness(capped_prefer(100))
    sibling_found_unschedulable(harness)
    assert TOLERATION not in (created(harness)["spec"].get("tolerations") or ())


def test_the_burst_controller_moves_untried_siblings_on_at_once(make_harness):
    kube = RecordingKube()
    untried = owned(pod("web-2", labels={"app": "nginx"}))
    untried["metadata"].update(uid="uid-web-2", resourceVersion="3", creationTimestamp="2026-01-01T00:00:00Z")
    other = owned(pod("db-2", labels={"app": "nginx"}), "rs-2")
    other["metadata"].update(uid="uid-db-2", resourceVersion="3", creationTimestamp="2026-01-01T00:00:00Z")
    harness = make_harness(seed("normal-node-prefer.yaml"), objects=default_objects() + [untried, other], kube=kube)
    ctl = BurstController(eci.profile_of(harness.host))
    ctl.active = True
    for key in ("default/web-2", "default/db-2"):  # not tried by the scheduler, nothing known: left alone
        ctl.reconcile(key)
    assert kube.writes() == []
    sibling_found_unschedulable(harness)
    assert ctl.queue.has("default/web-2") and not ctl.queue.has("default/db-2")
    ctl.reconcile("default/web-2")
    (method, path, body), = kube.writes()
    assert path == "/api/v1/namespaces/default/pods/web-2" and body[-1]["value"] == [TOLERATION]
    assert decisions(harness, "siblingUnschedulable") == 1
