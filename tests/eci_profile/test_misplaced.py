"""virtualNodeOnly with evictFromNormalNodes: its pods found running on normal nodes (admitted while
no replica answered) are evicted to come back through the webhook; nothing else is."""

import pytest

from framework.kube.labels import LabelSelector
from framework.testing import node, pod
from plugins.eci_profile import plugin as eci
from plugins.eci_profile import selectors
from plugins.eci_profile.cap_enforcement import EVICTIONS_PER_MINUTE
from plugins.eci_profile.misplaced import MisplacedPodEvictor

from .conftest import RecordingKube, default_objects, selector

RS = [{"kind": "ReplicaSet", "name": "web-1", "uid": "rs", "controller": True}]


def running(name, node_name="normal-1", owners=RS, app="nginx", **meta):
    p = pod(name, labels={"app": app})
    p["metadata"].update(uid=f"uid-{name}", ownerReferences=owners, **meta)
    p["spec"]["nodeName"] = node_name
    p["status"] = {"phase": "Running"}
    return p


class ListingKube(RecordingKube):
    def __init__(self, pods):
        super().__init__()
        self.pods, self.queries = pods, []

    def get(self, path, timeout=None, **query):
        if path != "/api/v1/pods":
            return super().get(path, timeout, **query)
        self.queries.append(query)
        return {"items": self.pods}


def only(evict=True, **spec):
    s = selector("only", "virtualNodeOnly", object_labels={"matchLabels": {"app": "nginx"},
                                                           "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})
    s["spec"]["policy"] = {"virtualNodeOnly": {"evictFromNormalNodes": evict}}
    s["spec"].update(spec)
    return s


def evictor(make_harness, pods, *sels):
    kube = ListingKube(pods)
    harness = make_harness(*sels, objects=default_objects() + [node("normal-2")], kube=kube)
    return MisplacedPodEvictor(eci.profile_of(harness.host)), kube


def evicted(kube):
    return sorted(path.split("/")[-2] for _, path, _ in kube.writes("POST") if path.endswith("/eviction"))


def test_only_its_replaceable_pods_on_normal_nodes_are_evicted(make_harness):
    pods = [running("on-normal"), running("on-normal-2", "normal-2"), running("on-virtual", "vk-1"),
            running("bare", owners=[]), running("deleting", deletionTimestamp="2027-01-15T08:00:00Z"),
            running("unknown-node", "gone-1"), running("db", app="db")]
    ctl, kube = evictor(make_harness, pods, only())
    assert ctl.step() == 2 and evicted(kube) == ["on-normal", "on-normal-2"]
    assert kube.queries == [{"fieldSelector": "status.phase=Running", "labelSelector": "app=nginx,!tier"}]


def test_a_pod_another_selector_wins_is_left_alone(make_harness):
    higher = selector("higher", "fair", priority=5, object_labels={"matchLabels": {"app": "nginx"}})
    ctl, kube = evictor(make_harness, [running("web")], only(), higher)
    assert ctl.step() == 0 and evicted(kube) == []


def test_nothing_without_the_opt_in_and_at_most_ten_a_minute(make_harness):
    pods = [running(f"web-{i}") for i in range(12)]
    ctl, kube = evictor(make_harness, pods, only(evict=False))
    assert ctl.step() == 0 and kube.queries == []
    ctl, kube = evictor(make_harness, pods, only())
    assert ctl.step() == EVICTIONS_PER_MINUTE and ctl.step() == 0


def test_evict_from_normal_nodes_is_checked():
    with pytest.raises(selectors.InvalidSelectorSpec, match="evictFromNormalNodes must be true or false"):
        selectors.parse(only(evict="yes"))
    assert selectors.parse(only()).describe_policy() == "virtualNodeOnly (evict from normal nodes)"


def test_a_label_selector_as_a_query():
    sel = LabelSelector.parse({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "t", "operator": "In", "values": ["y", "x"]}, {"key": "u", "operator": "NotIn", "values": ["z"]},
        {"key": "v", "operator": "Exists"}, {"key": "w", "operator": "DoesNotExist"}]})
    assert sel.query() == "a=1,b=2,t in (x,y),u notin (z),v,!w"
