"""The burst engine offline: timing rules on a clock the test sets, autoscaler words, caps,
scale-in order, which pods are left alone, and warnings."""

import pytest

from framework.testing import FakeKube, binding, pod
from plugins.eci_profile import selectors, timing
from plugins.eci_profile.cap import SELECTOR_LABEL
from plugins.eci_profile.settings import Options, Settings

from .conftest import TOLERATION, RecordingKube, default_objects, seed, selector

T0 = 1_800_000_000.0  # when the pod became Unschedulable


def prefer(**fields):
    spec = {"policy": {"normalNodePrefer": fields.pop("policy", {})}, **fields}
    return selectors.parse({"metadata": {"name": "s"}, "spec": spec})


def event(component, reason, at, message="", new_api=False):
    stamp = timing.datetime.datetime.fromtimestamp(at, timing.datetime.timezone.utc).isoformat()
    if new_api:  # events.k8s.io writers: reportingController and eventTime only
        return {"reportingComponent": component, "reason": reason, "message": message, "eventTime": stamp}
    return {"source": {"component": component}, "reason": reason, "message": message, "lastTimestamp": stamp}


def signal(*events):
    return timing.autoscaler_signal(events, timing.DEFAULT_AUTOSCALER_RULES, since=T0)


# -- timing -------------------------------------------------------------------------------------
def test_without_waiting_the_burst_comes_burst_after_after_unschedulable():
    sel = prefer(policy={"burstAfter": "30s"})
    assert not timing.decide(T0 + 29.9, T0, sel, None, 600).burst
    decision = timing.decide(T0 + 30, T0, sel, None, 600)
    assert decision.burst and decision.at == T0 + 30 and decision.reason == "burstAfter"
    # An autoscaler's word changes nothing when the Selector does not wait for one.
    assert timing.decide(T0 + 30, T0, sel, signal(event("karpenter", "Nominated", T0 + 1)), 600).burst


def test_default_burst_after_is_zero_or_thirty_seconds_when_waiting():
    assert timing.decide(T0, T0, prefer(), None, 600).burst
    assert timing.decide(T0, T0, prefer(), None, 600).reason == "unschedulable"
    waiting = prefer(policy={"waitForAutoscaler": True})
    assert not timing.decide(T0 + 29, T0, waiting, None, 600).burst
    assert timing.decide(T0 + 30, T0, waiting, None, 600).reason == "noAutoscaler"


def test_a_provisioning_autoscaler_holds_the_burst_until_max_wait():
    sel = prefer(policy={"waitForAutoscaler": True, "burstAfter": "10s", "maxWait": "5m"})
    word = signal(event("cluster-autoscaler", "TriggeredScaleUp", T0 + 2,
                        "pod triggered scale-up: [{group 1->2 (max: 5)}]"))
    held = timing.decide(T0 + 299, T0, sel, word, 600)
    assert not held.burst and held.at == T0 + 300 and "cluster-autoscaler" in held.message
    assert timing.decide(T0 + 300, T0, sel, word, 600).reason == "maxWait"
    # The plugin's defaultMaxWait applies when the Selector names none.
    sel = prefer(policy={"waitForAutoscaler": True})
    assert timing.decide(T0 + 100, T0, sel, word, 120).at == T0 + 120


def test_an_autoscaler_that_cannot_help_lets_it_burst_at_burst_after():
    sel = prefer(policy={"waitForAutoscaler": True, "burstAfter": "10s", "maxWait": "10m"})
    word = signal(event("karpenter", "Nominated", T0 + 1), event(
        "karpenter", "FailedScheduling", T0 + 3, "all available instance types exceed limits for nodepool",
        new_api=True))
    assert word.means == timing.CANNOT_HELP
    decision = timing.decide(T0 + 10, T0, sel, word, 600)
    assert decision.burst and decision.reason == "autoscalerCannotHelp"


def test_the_newest_word_wins_and_words_before_unschedulable_are_ignored():
    assert signal(event("cluster-autoscaler", "NotTriggerScaleUp", T0 + 1),
                  event("cluster-autoscaler", "TriggeredScaleUp", T0 + 5)).means == timing.PROVISIONING
    assert signal(event("cluster-autoscaler", "TriggeredScaleUp", T0 - 60)) is None
    assert signal(event("default-scheduler", "FailedScheduling", T0 + 1)) is None


def test_custom_autoscaler_rules_replace_the_defaults():
    settings = Settings.from_options(Options(autoscaler_events=[
        {"component": "my-scaler", "reason": "Provisioning", "means": "provisioning"}], default_max_wait="2m"))
    assert settings.default_max_wait == 120
    found = timing.autoscaler_signal([event("my-scaler", "Provisioning", T0)], settings.autoscaler_rules, T0)
    assert found.means == timing.PROVISIONING
    for bad in ([{"component": "x", "reason": "y", "means": "maybe"}],
                [{"component": "x", "reason": "y", "means": "provisioning", "extra": "1"}]):
        with pytest.raises(ValueError):
            Options(autoscaler_events=bad)


# -- Selector fields ----------------------------------------------------------------------------
def test_new_fields_parse_and_read_back():
    sel = prefer(policy={"burstAfter": "1m30s", "waitForAutoscaler": True, "maxWait": "1h"},
                 maxVirtualPods=20, scaleIn="VirtualFirst", drainBack={"after": "10m", "maxPerMinute": 3})
    assert (sel.burst_after, sel.max_wait, sel.max_virtual_pods, sel.drain_after, sel.drain_per_minute) == \
        (90, 3600, 20, 600, 3)
    assert sel.describe_policy() == ("normalNodePrefer (after 90s, wait for autoscaler up to 1h, "
                                     "virtual first on scale-in, drain back after 10m)")
    assert prefer().describe_policy() == "normalNodePrefer"


@pytest.mark.parametrize("spec", [
    {"policy": {"normalNodePrefer": {"burstAfter": "-5s"}}},
    {"policy": {"normalNodePrefer": {"burstAfter": "30"}}},
    {"policy": {"normalNodePrefer": {"maxWait": "ten minutes"}}},
    {"policy": {"normalNodePrefer": {"waitForAutoscaler": "yes"}}},
    {"policy": {"fair": {}}, "maxVirtualPods": -1},
    {"policy": {"fair": {}}, "scaleIn": "Random"},
    {"policy": {"fair": {}}, "drainBack": {"maxPerMinute": 5}},
    {"policy": {"fair": {}}, "drainBack": {"after": "10m", "maxPerMinute": 0}},
])
def test_malformed_fields_are_refused(spec):
    with pytest.raises(selectors.InvalidSelectorSpec):
        selectors.parse({"metadata": {"name": "bad"}, "spec": spec})


# -- binding: cap and scale-in ------------------------------------------------------------------
def pending(name, labels=None, annotations=None, owner=None):
    p = pod(name, labels=labels or {"app": "nginx"}, annotations=annotations)
    p["metadata"]["uid"] = f"uid-{name}"
    p["metadata"]["resourceVersion"] = "7"
    if owner:
        p["metadata"]["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "o1", "controller": True}]
    return p


def on_virtual(name, sel, deleting=False):
    p = pending(name, labels={"app": "nginx", SELECTOR_LABEL: sel})
    p["spec"]["nodeName"] = "vk-1"
    p["status"] = {"phase": "Running"}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


def capped(cap, **extra):
    s = selector("capped", "fair", object_labels={"matchLabels": {"app": "nginx"}})
    s["spec"].update(maxVirtualPods=cap, **extra)
    return s


def test_binding_past_the_cap_is_refused_and_a_pod_being_deleted_does_not_count(make_harness):
    objects = default_objects() + [on_virtual("a", "capped"), on_virtual("b", "capped", deleting=True),
                                   pending("c"), pending("d")]
    harness = make_harness(capped(2), objects=objects, kube=FakeKube())
    assert harness.create(binding("c", "vk-1")).allowed
    refused = harness.create(binding("d", "vk-1"))  # a counts, c is reserved: 2 of 2
    assert not refused.allowed
    assert "at most 2 pods on virtual nodes" in refused.status["message"] and "capped" in refused.status["message"]
    assert harness.create(binding("d", "normal-1")).allowed  # normal nodes are never capped
    assert harness.create(binding("c", "vk-1")).allowed  # c is counted already: a retry passes


def test_scale_in_virtual_first_sets_a_deletion_cost_unless_there_is_one(make_harness):
    objects = default_objects() + [pending("a"), pending("b", annotations={
        "controller.kubernetes.io/pod-deletion-cost": "5"})]
    harness = make_harness(capped(10, scaleIn="VirtualFirst"), objects=objects, kube=FakeKube())
    assert harness.create(binding("a", "vk-1")).object["metadata"]["annotations"] == {
        "controller.kubernetes.io/pod-deletion-cost": "-1000"}
    assert "annotations" not in harness.create(binding("b", "vk-1")).object["metadata"]
    effect = capped(10, scaleIn="VirtualFirst")
    effect["spec"]["effect"] = {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-5"}}
    harness = make_harness(effect, objects=default_objects() + [pending("a")], kube=FakeKube())
    assert harness.create(binding("a", "vk-1")).object["metadata"]["annotations"] == {
        "controller.kubernetes.io/pod-deletion-cost": "-5"}


def test_daemonset_pods_are_never_bound_with_an_effect(make_harness):
    kube = RecordingKube()
    objects = default_objects() + [pending("ds", owner="DaemonSet")]
    result = make_harness(seed("fair.yaml"), objects=objects, kube=kube).create(binding("ds", "vk-1"))
    assert result.patch == [] and kube.writes() == []


# -- warnings -----------------------------------------------------------------------------------
def test_pods_sent_to_virtual_nodes_at_creation_are_warned_of_host_features(make_harness):
    harness = make_harness(seed("fair.yaml"))
    p = pod("web", labels={"app": "nginx"})
    p["spec"].update(hostNetwork=True, volumes=[{"name": "logs", "hostPath": {"path": "/var/log"}}])
    p["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    result = harness.create(p)
    assert TOLERATION in result.object["spec"]["tolerations"]
    fields = " ".join(result.warnings)
    for field in ("spec.hostNetwork", "spec.volumes[logs].hostPath", "spec.containers[main].securityContext.privileged"):
        assert field in fields
    plain = harness.create(pod("plain", labels={"app": "nginx"}))
    assert plain.warnings == []


def test_metrics_show_each_selectors_virtual_pods_against_its_cap(make_harness):
    objects = default_objects() + [on_virtual("a", "capped"), on_virtual("b", "capped")]
    harness = make_harness(capped(5), objects=objects, kube=FakeKube())
    from prometheus_client import generate_latest

    text = generate_latest(harness.host.metrics.registry).decode()
    assert 'eci_profile_virtual_pods{selector="capped"} 2.0' in text
    assert 'eci_profile_virtual_pods_cap{selector="capped"} 5.0' in text


def test_a_dry_run_binding_is_capped_but_reserves_nothing(make_harness):
    objects = default_objects() + [on_virtual("a", "capped"), pending("c"), pending("d")]
    harness = make_harness(capped(2), objects=objects, kube=FakeKube())
    for _ in range(3):
        assert harness.create(binding("c", "vk-1"), dry_run=True).allowed
    assert harness.create(binding("d", "vk-1")).allowed  # 2 of 2: the dry runs took no place
    assert not harness.create(binding("c", "vk-1"), dry_run=True).allowed


@pytest.mark.parametrize("value", ["100m", "1", "1.5", "2Gi", "512Mi", "1Ki", "3e3", "1E2", ".5", "10n", "250u",
                                   "1k", "2M", "1G", "1T", "1P", "1E", "1e-3", 7, 2.5, "+1", "-2m", "1.5Gi", "0"])
def test_quantities_parse_as_the_kubernetes_package_parses_them(value):
    from kubernetes.utils.quantity import parse_quantity as theirs

    from plugins.eci_profile.resources import parse_quantity

    assert parse_quantity(value) == theirs(value)


@pytest.mark.parametrize("value", ["", "abc", "1Z", "1.2.3", "Mi", None, "1 Gi", True])
def test_what_is_not_a_quantity_is_refused(value):
    from plugins.eci_profile.resources import parse_quantity

    with pytest.raises(ValueError):
        parse_quantity(value)


def test_a_pods_requests_are_summed_the_same_when_its_amounts_come_again():
    from plugins.eci_profile.resources import requests_of

    spec = {"containers": [{"resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}},
                           {"resources": {"requests": {"cpu": 1, "memory": "512Mi"}}},
                           {"resources": {"requests": {"cpu": True, "memory": ["1Gi"]}}}],  # not amounts: 0
               "initContainers": [{"resources": {"requests": {"cpu": "2"}}}]}
    for _ in range(3):  # parsed once, then remembered: the same sums each time
        assert requests_of(spec) == (2000, 1536 * 2 ** 20)
