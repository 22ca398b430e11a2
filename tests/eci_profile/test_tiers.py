"""Tiers: spec.tiers parsed and refused, the policies as presets, what a pod gets at creation and at
binding, how the burst controller moves it on (passing over a full tier), and what users see."""

import pytest
from prometheus_client import generate_latest

from framework.testing import FakeKube, binding, node, pod
from plugins.eci_profile import plugin as eci
from plugins.eci_profile import selectors
from plugins.eci_profile.burst import BurstController
from plugins.eci_profile.cap import SELECTOR_LABEL
from plugins.eci_profile.status import SelectorStatusController
from plugins.eci_profile.tiers import TIER_LABEL

from .conftest import TOLERATION, VNODE, RecordingKube, default_objects, seed
from .test_burst import unschedulable

SPOT = {"key": "spot", "operator": "Exists", "effect": "NoSchedule"}


def tiered(*tiers, **spec):
    return {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "web"},
            "spec": {"objectLabels": {"matchLabels": {"app": "nginx"}}, "tiers": list(tiers), **spec}}


def three_tiers(spot_max=2, virtual_max=None, effect=None, **spec):
    """On-demand (untainted), spot (tainted, capped), virtual nodes: the shape users ask for."""
    virtual = {"name": "virtual", "virtualNodes": True}
    if virtual_max is not None:
        virtual["maxPods"] = virtual_max
    return tiered({"name": "on-demand", "nodeLabels": {"pool": "on-demand"}},
                  {"name": "spot", "nodeLabels": {"pool": "spot"}, "tolerations": [SPOT], "maxPods": spot_max,
                   "burstAfter": "0s"},
                  virtual, effect=effect or {"labels": {"burst": "yes"}, "annotations": {"eci": "yes"}}, **spec)


def objects():
    return default_objects() + [node("od-1", {"pool": "on-demand"}), node("spot-1", {"pool": "spot"})]


def parse(obj):
    return selectors.parse(obj)


# -- the schema the host checks -------------------------------------------------------------------
@pytest.mark.parametrize("spec, says", [
    ({"policy": {"fair": {}}}, "spec.tiers and spec.policy are exclusive"),
    ({"maxVirtualPods": 3}, "maxVirtualPods does not go with spec.tiers"),
    ({"scaleIn": "VirtualFirst"}, "VirtualFirst goes with a policy"),
])
def test_tiers_exclude_the_policy_and_its_fields(spec, says):
    with pytest.raises(selectors.InvalidSelectorSpec, match=says):
        parse(three_tiers(**spec))


@pytest.mark.parametrize("tiers, says", [
    ([{"name": "spot", "tolerations": [SPOT]}, {"name": "od", "nodeLabels": {"pool": "od"}}],
     "cannot come after spot"),
    ([{"name": "od", "nodeLabels": {"pool": "od"}, "maxPods": 3}, {"name": "v", "virtualNodes": True}],
     "maxPods needs a tier that tolerations open"),
    ([{"name": "od"}, {"name": "v", "virtualNodes": True, "burstAfter": "1m"}], "the last tier has none"),
    ([{"name": "Spot_Pool"}], "must be a DNS label"),
    ([{"name": "a"}, {"name": "a", "tolerations": [SPOT]}], "unique"),
    ([{"name": "v1", "virtualNodes": True}, {"name": "v2", "virtualNodes": True}], "at most one"),
    ([{"name": f"t{i}", "tolerations": [SPOT]} for i in range(9)], "1 to 8 tiers"),
    ([{"name": "od", "weight": 3}], "unknown field"),
])
def test_tiers_whose_order_cannot_be_kept_are_refused_saying_why(tiers, says):
    with pytest.raises(selectors.InvalidSelectorSpec, match=says):
        parse(tiered(*tiers))


def test_the_policies_are_presets_of_tiers():
    def shape(name, **spec):
        sel = parse({"metadata": {"name": "s"}, "spec": {"policy": {name: spec.pop("policy", {})}, **spec}})
        return [(t.name, t.virtual, t.moves_on, t.open_at_create, t.max_pods, t.burst_delay) for t in sel.tiers]

    assert shape("normalNodePrefer", policy={"burstAfter": "20s"}, maxVirtualPods=5) == [
        ("normal", False, True, False, None, 20.0), ("virtual", True, True, False, 5, 0.0)]
    assert shape("fair") == [("normal", False, False, False, None, 0.0), ("virtual", True, True, True, None, 0.0)]
    assert shape("normalNodeOnly") == [("normal", False, False, False, None, 0.0),
                                       ("virtual", True, True, False, None, 0.0)]
    assert shape("virtualNodeOnly") == [("virtual", True, True, False, None, 0.0)]
    assert parse(three_tiers()).scale_in == "ReverseTiers"


# -- at creation ------------------------------------------------------------------------------------
def test_a_new_pod_is_fenced_to_its_tiers_and_prefers_the_earlier_unfenced_ones(make_harness):
    sel = tiered({"name": "on-demand", "nodeLabels": {"pool": "on-demand"}},
                 {"name": "reserved", "nodeLabels": {"pool": "reserved"}},
                 {"name": "spot", "nodeLabels": {"pool": "spot"}, "tolerations": [SPOT]},
                 {"name": "virtual", "virtualNodes": True})
    harness = make_harness(sel, objects=objects())
    result = harness.create(pod("web", labels={"app": "nginx"}))
    affinity = result.object["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [t["matchExpressions"] for t in terms] == [
        [{"key": "pool", "operator": "In", "values": [v]}] for v in ("on-demand", "reserved", "spot")] + [
        [{"key": "k8s.aliyun.com/vnode", "operator": "In", "values": ["true"]}]]
    assert [(p["weight"], p["preference"]["matchExpressions"][0]["values"])
            for p in affinity["preferredDuringSchedulingIgnoredDuringExecution"]] == [(100, ["on-demand"]),
                                                                                     (90, ["reserved"])]
    assert "tolerations" not in result.object["spec"]  # the fenced tiers open later, one at a time
    assert harness.create(result.object).patch == []  # called again (reinvocation): nothing more


def test_the_pods_own_required_affinity_is_kept_and_joined_with_the_tiers(make_harness):
    p = pod("web", labels={"app": "nginx"})
    own = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
           {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]
    p["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": own}}}
    result = make_harness(three_tiers(), objects=objects()).create(p)
    terms = result.object["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    # (zone a or zone b) and (on-demand or spot or virtual): each of its terms with each tier.
    assert len(terms) == 6
    assert all(t["matchExpressions"][0]["key"] == "zone" and len(t["matchExpressions"]) == 2 for t in terms)


def test_the_seed_policies_change_a_pod_exactly_as_before(make_harness):
    plain = pod("web", labels={"app": "nginx"})
    assert make_harness(seed("normal-node-prefer.yaml")).create(plain).patch == []
    fair = make_harness(seed("fair.yaml")).create(pod("web", labels={"app": "nginx"}))
    assert fair.object["spec"] == {**plain["spec"], "tolerations": [TOLERATION]}
    only = make_harness(seed("virtual-node-only.yaml")).create(pod("web", labels={"app": "nginx"}))
    assert only.object["spec"] == {**plain["spec"], "tolerations": [TOLERATION], "nodeSelector": VNODE}


# -- at binding --------------------------------------------------------------------------------------
def pending(name):
    p = pod(name, labels={"app": "nginx"})
    p["metadata"].update(uid=f"uid-{name}", resourceVersion="3")
    return p


def in_tier(name, tier, node_name):
    p = pending(name)
    p["metadata"]["labels"].update({SELECTOR_LABEL: "web", TIER_LABEL: tier})
    p["spec"]["nodeName"] = node_name
    p["status"] = {"phase": "Running"}
    return p


def test_a_binding_into_a_tier_gets_its_deletion_cost_and_labels_and_a_full_tier_is_refused(make_harness):
    kube = FakeKube()
    harness = make_harness(three_tiers(spot_max=2), objects=objects() + [
        in_tier("a", "spot", "spot-1"), pending("b"), pending("c"), pending("d")], kube=kube)
    spot = harness.create(binding("b", "spot-1"))
    assert spot.allowed
    # Spot is tier 1 (cost -1000); the effect is for virtual nodes only.
    assert spot.object["metadata"]["annotations"] == {"controller.kubernetes.io/pod-deletion-cost": "-1000"}
    refused = harness.create(binding("c", "spot-1"))  # a and b: 2 of 2
    assert not refused.allowed and "at most 2 pods in tier spot" in refused.status["message"]
    virtual = harness.create(binding("c", "vk-1"))
    assert virtual.allowed and virtual.object["metadata"]["annotations"] == {
        "eci": "yes", "controller.kubernetes.io/pod-deletion-cost": "-2000"}
    assert virtual.object["metadata"]["labels"] == {"burst": "yes", "eci.aliyun.com/selector": "web",
                                                    "eci.aliyun.com/tier": "virtual"}
    first = harness.create(binding("d", "od-1"))
    # Tier 0: no cost, nothing to annotate; the labels the tier's pods are counted by ride on the Binding.
    assert first.allowed and first.patch == [{"op": "add", "path": "/metadata/labels", "value": {
        "eci.aliyun.com/selector": "web", "eci.aliyun.com/tier": "on-demand"}}]


def test_a_cost_the_pod_or_the_effect_carries_is_kept(make_harness):
    sel = three_tiers(effect={"annotations": {"controller.kubernetes.io/pod-deletion-cost": "7"}})
    own = pending("own")
    own["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": "50"}
    harness = make_harness(sel, objects=objects() + [own, pending("b")], kube=FakeKube())
    assert "annotations" not in harness.create(binding("own", "vk-1")).object["metadata"]
    assert harness.create(binding("b", "vk-1")).object["metadata"]["annotations"] == {
        "controller.kubernetes.io/pod-deletion-cost": "7"}


# -- moving on -------------------------------------------------------------------------------------------
def controller(make_harness, sel, *pods, kube):
    harness = make_harness(sel, objects=objects() + list(pods), kube=kube)
    return BurstController(eci.profile_of(harness.host))


def added_tolerations(kube):
    (method, path, body), = kube.writes()
    return body[-1]["value"]


def test_an_unschedulable_pod_moves_on_to_the_next_tier_and_a_full_one_is_passed_over(make_harness):
    kube = RecordingKube()
    controller(make_harness, three_tiers(spot_max=1), unschedulable(), kube=kube).reconcile("default/web")
    assert added_tolerations(kube) == [SPOT]
    event = kube.writes("POST")[0][2]
    assert event["reason"] == "MovedToTier" and "tier spot opened" in event["message"]

    kube = RecordingKube()
    controller(make_harness, three_tiers(spot_max=1), unschedulable(), in_tier("s", "spot", "spot-1"),
               kube=kube).reconcile("default/web")
    assert added_tolerations(kube) == [TOLERATION]  # spot full: straight to the virtual nodes

    kube = RecordingKube()
    controller(make_harness, three_tiers(spot_max=1), unschedulable(tolerations=[SPOT]), kube=kube
               ).reconcile("default/web")
    assert added_tolerations(kube) == [SPOT, TOLERATION]  # from spot to virtual: it keeps spot


def test_with_every_later_tier_full_the_pod_waits(make_harness):
    kube = RecordingKube()
    ctl = controller(make_harness, three_tiers(spot_max=1, virtual_max=1), unschedulable(),
                     in_tier("s", "spot", "spot-1"), in_tier("v", "virtual", "vk-1"), kube=kube)
    ctl.reconcile("default/web")
    assert kube.writes() == [] and ctl.waiting_count("web") == 1
    event = kube.writes("POST")[0][2]
    assert event["reason"] == "BurstDelayed" and "every later tier is full (spot maxPods 1, virtual maxPods 1)" \
        in event["message"]


def test_the_last_tier_and_a_pod_that_was_never_unschedulable_stay(make_harness):
    kube = RecordingKube()
    controller(make_harness, three_tiers(), unschedulable(tolerations=[SPOT, TOLERATION]), kube=kube
               ).reconcile("default/web")
    fresh = pod("web", labels={"app": "nginx"})
    fresh["metadata"].update(uid="uid-web", resourceVersion="1")
    controller(make_harness, three_tiers(), fresh, kube=kube).reconcile("default/web")
    assert kube.writes() == []


# -- seen by users ------------------------------------------------------------------------------------------
def test_status_metrics_and_explain_show_each_tier(make_harness):
    kube = FakeKube()
    harness = make_harness(three_tiers(spot_max=2), objects=objects() + [
        in_tier("a", "spot", "spot-1"), in_tier("b", "on-demand", "od-1"), in_tier("c", "on-demand", "od-1")],
        kube=kube)
    profile = eci.profile_of(harness.host)
    counts = SelectorStatusController(profile).counts(harness.store("eci-selectors").get("web"))
    assert counts["tiers"] == "on-demand=2,spot=1/2,virtual=0"
    assert counts["tierPods"] == [{"name": "on-demand", "pods": 2}, {"name": "spot", "pods": 1, "maxPods": 2},
                                  {"name": "virtual", "pods": 0}]
    assert counts["overCap"] == 0
    text = generate_latest(harness.host.metrics.registry).decode()
    assert 'eci_profile_tier_pods{selector="web",tier="spot"} 1.0' in text
    assert 'eci_profile_tier_pods_cap{selector="web",tier="spot"} 2.0' in text
    lines = "\n".join(eci.admission_host_explain(harness.host, in_tier("a", "spot", "spot-1")))
    assert "tiers: on-demand (normal nodes pool=on-demand; moves on after 0s Unschedulable) > spot (normal nodes " \
           "pool=spot; opened by tolerations spot; max 2, 1 there now; moves on after 0s Unschedulable) > virtual " \
           "(virtual nodes)" in lines
    assert "tier now: spot (on node spot-1)" in lines
    assert "scale-in: in reverse tier order: on-demand pod-deletion-cost none, spot pod-deletion-cost -1000, " \
           "virtual pod-deletion-cost -2000" in lines
    waiting = unschedulable(tolerations=[SPOT])
    lines = "\n".join(eci.admission_host_explain(harness.host, waiting))
    assert "tier now: pending, may use on-demand, spot; moves on:" in lines


# -- drain-back, generalised ---------------------------------------------------------------------------------
def test_drain_back_sends_pods_to_the_earliest_tier_with_room_latest_tier_first(make_harness):
    from plugins.eci_profile.drain import DrainBackController, NodeUsage

    from .test_drain_back import NOW, EvictingKube, a_node, virtual_pod

    def placed(name, tier, node_name):
        p = virtual_pod(name, owner=name)
        p["metadata"]["labels"][TIER_LABEL] = tier
        p["metadata"]["labels"][SELECTOR_LABEL] = "web"
        p["spec"]["nodeName"] = node_name
        return p

    spot_taint = [{"key": "spot", "effect": "NoSchedule"}]
    nodes = [a_node("vk-1", "100", VNODE), a_node("od-1", "1", {"pool": "on-demand"}),
             a_node("spot-1", "8", {"pool": "spot"}, taints=spot_taint)]
    kube = EvictingKube()
    sel = three_tiers(spot_max=2, drainBack={"after": "10m", "maxPerMinute": 10})
    harness = make_harness(sel, objects=nodes + [placed("s1", "spot", "spot-1"), placed("v1", "virtual", "vk-1"),
                                                 placed("v2", "virtual", "vk-1"), placed("v3", "virtual", "vk-1")],
                           kube=kube)
    ctl = DrainBackController(eci.profile_of(harness.host), clock=lambda: NOW)
    ctl.usage = NodeUsage()
    ctl.usage.replace([])
    # on-demand has room for one pod (1 CPU); spot has room under its cap for one more (1 of 2).
    # The virtual tier goes first: v1 to on-demand, v2 to spot; v3 waits; s1 finds no earlier room.
    assert ctl.step() == 2 and kube.evicted() == ["v1", "v2"]
    assert [claim[1] for claim in ctl._claims] == ["od-1", "spot-1"]  # the room promised to their replacements


def test_each_capped_tier_has_a_record_of_its_own_that_the_leader_keeps_while_the_tier_is_capped():
    from plugins.eci_profile.cap import CapRecordCleaner, record_name

    assert record_name("web") == "eci-cap-web"  # a policy's cap: as before tiers
    spot = record_name("web/spot")
    assert spot.startswith("eci-cap-t-") and spot != record_name("web.spot") and spot != record_name("web/other")
    sel = parse(three_tiers(spot_max=20, virtual_max=5))
    cleaner = CapRecordCleaner(None, {"web": {"selector": sel}})
    assert (cleaner.cap_of("web/spot"), cleaner.cap_of("web/virtual"), cleaner.cap_of("web/on-demand"),
            cleaner.cap_of("web")) == (20, 5, None, None)


def test_the_documented_example_is_a_valid_selector():
    import pathlib
    import re

    import yaml

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "selectors.md").read_text()
    example = next(yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)
                   if "tiers:" in block and "kind: Selector" in block)
    sel = parse(example)
    assert [t.name for t in sel.tiers] == ["on-demand", "spot", "virtual"] and sel.tiers[1].max_pods == 20
    assert sel.tiers[1].wait_for_autoscaler and sel.drain_after == 600 and sel.scale_in == "ReverseTiers"
