"""The example plugins: pod_deletion_cost (bundled) and env_injector (its own distribution)."""

import sys
from pathlib import Path

import pytest

from framework.plugins import PluginError
from framework.testing import PluginHarness, namespace, pod
from plugins.examples import pod_deletion_cost

ENV_INJECTOR = Path(__file__).resolve().parents[2] / "plugins" / "examples" / "env_injector"
COST = "controller.kubernetes.io/pod-deletion-cost"
LABEL = "example.com/deletion-cost"


@pytest.fixture
def cost():
    harness = PluginHarness(pod_deletion_cost)
    yield harness
    harness.close()


def test_label_becomes_the_annotation(cost):
    result = cost.create(pod("p", labels={LABEL: "-100"}))
    assert result.object["metadata"]["annotations"] == {COST: "-100"}
    assert result.warnings == []


def test_pods_without_the_label_are_unchanged(cost):
    assert cost.create(pod("p", labels={"app": "web"})).patch == []
    assert cost.create(pod("p")).patch == []


def test_an_existing_annotation_wins(cost):
    result = cost.create(pod("p", labels={LABEL: "5"}, annotations={COST: "999", "other": "x"}))
    assert result.patch == []
    assert result.object["metadata"]["annotations"] == {COST: "999", "other": "x"}


def test_other_annotations_are_kept(cost):
    result = cost.create(pod("p", labels={LABEL: "5"}, annotations={"other": "x"}))
    assert result.object["metadata"]["annotations"] == {"other": "x", COST: "5"}


@pytest.mark.parametrize("value, says", [("cheap", "is not an integer"), ("1.5", "is not an integer"),
                                         (str(2 ** 31), "is outside int32"), (str(-(2 ** 31) - 1), "is outside int32")])
def test_a_bad_value_warns_and_changes_nothing(cost, value, says):
    result = cost.create(pod("p", labels={LABEL: value}))
    assert result.patch == []
    assert len(result.warnings) == 1 and says in result.warnings[0] and LABEL in result.warnings[0]


def test_int32_bounds_are_accepted(cost):
    for value in (str(2 ** 31 - 1), str(-(2 ** 31)), "+7", " 8 "):
        assert cost.create(pod("p", labels={LABEL: value})).object["metadata"]["annotations"][COST] == \
            str(int(value))


def test_reinvocation_is_idempotent(cost):
    first = cost.create(pod("p", labels={LABEL: "3"}))
    again = cost.create(first.object)
    assert again.patch == [] and again.warnings == []


def test_the_label_is_an_option():
    harness = PluginHarness(pod_deletion_cost, options={"pod_deletion_cost": {"label": "cost"}})
    assert harness.create(pod("p", labels={"cost": "1"})).object["metadata"]["annotations"] == {COST: "1"}
    assert harness.create(pod("p", labels={LABEL: "1"})).patch == []


def test_unknown_options_stop_the_host():
    with pytest.raises(PluginError, match="unknown option.*lable"):
        PluginHarness(pod_deletion_cost, options={"pod_deletion_cost": {"lable": "x"}})


@pytest.fixture(scope="module")
def env_injector():
    sys.path.insert(0, str(ENV_INJECTOR))
    try:
        import admission_host_env_injector
        yield admission_host_env_injector
    finally:
        sys.path.remove(str(ENV_INJECTOR))
        sys.modules.pop("admission_host_env_injector", None)


ENABLED = {"env-injector.example.com/enabled": "true"}


def injector(module, env=None, objects=(), **options):
    options = {"env": {"CLUSTER_NAME": "prod-eu-1", "REGION": 7} if env is None else env, **options}
    return PluginHarness(("env_injector", module), options={"env_injector": options},
                         objects=[namespace("on", ENABLED), namespace("off", {}), *objects])


def two_containers(**kw):
    return pod("p", namespace="on", spec={
        "initContainers": [{"name": "init", "image": "busybox"}],
        "containers": [{"name": "app", "image": "app", "env": [{"name": "REGION", "value": "mine"}]}],
    }, **kw)


def test_env_is_injected_in_labelled_namespaces(env_injector):
    result = injector(env_injector).create(two_containers())
    spec = result.object["spec"]
    assert spec["initContainers"][0]["env"] == [{"name": "CLUSTER_NAME", "value": "prod-eu-1"},
                                                {"name": "REGION", "value": "7"}]
    # The pod's own value wins; the missing one is appended.
    assert spec["containers"][0]["env"] == [{"name": "REGION", "value": "mine"},
                                            {"name": "CLUSTER_NAME", "value": "prod-eu-1"}]
    assert {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "CLUSTER_NAME",
                                                                         "value": "prod-eu-1"}} in result.patch


def test_other_namespaces_are_left_alone(env_injector):
    harness = injector(env_injector)
    assert harness.create(pod("p", namespace="off")).patch == []
    assert harness.create(pod("p", namespace="unknown")).patch == []


def test_the_namespace_label_is_an_option(env_injector):
    harness = injector(env_injector, namespaceLabel="inject", objects=[namespace("custom", {"inject": "true"})])
    assert harness.create(pod("p", namespace="on")).patch == []
    assert harness.create(pod("p", namespace="custom")).object["spec"]["containers"][0]["env"][0]["name"] == \
        "CLUSTER_NAME"


def test_no_env_configured_changes_nothing(env_injector):
    assert injector(env_injector, env={}).create(two_containers()).patch == []


def test_injection_is_idempotent(env_injector):
    harness = injector(env_injector)
    first = harness.create(two_containers())
    assert harness.create(first.object).patch == []


def test_the_namespace_cache_keeps_names_and_labels_only(env_injector):
    ns = namespace("on", ENABLED)
    ns["metadata"]["annotations"] = {"big": "x" * 1000}
    ns["spec"] = {"finalizers": ["kubernetes"]}
    harness = PluginHarness(("env_injector", env_injector), options={"env_injector": {"env": {"A": "1"}}},
                            objects=[ns])
    assert harness.store("env-injector-namespaces").get("on") == {"metadata": {"name": "on", "labels": ENABLED}}


def test_a_bad_env_option_stops_the_host(env_injector):
    with pytest.raises(PluginError, match="option env must be a map"):
        PluginHarness(("env_injector", env_injector), options={"env_injector": {"env": ["A=1"]}})
