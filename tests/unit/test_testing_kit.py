"""framework.testing: what a plugin author tests with, used as a plugin author would."""

import datetime

import pytest
import yaml

from framework import Controller, Denied, Mutator, Watch, hookimpl
from framework.config import Config, ConfigError, load_file
from framework.plugins import PluginError
from framework.testing import PluginHarness, Result, binding, namespace, node, pod, review
from plugins.examples import pod_deletion_cost


class TeamLabels:
    """Copies the namespace's ``team`` label onto pods; refuses pods of the namespace ``closed``."""

    def __init__(self):
        self.options = None
        self.shut_down = False

    @hookimpl
    def admission_host_startup(self, options):
        self.options = options

    @hookimpl
    def admission_host_watches(self):
        return [Watch(name="team-namespaces", resource="namespaces", kind="Namespace")]

    @hookimpl
    def admission_host_mutators(self, host, options):
        namespaces = host.store("team-namespaces")
        key = options.get("label", "team")

        def mutate(req):
            if req.namespace == "closed":
                raise Denied("namespace closed takes no pods")
            ns = namespaces.get_by_name(req.namespace)
            if ns is None:
                req.warn(f"namespace {req.namespace} not in the cache")
                return
            req.object["metadata"].setdefault("labels", {})[key] = ns["metadata"]["labels"].get("team", "")
            req.audit("team", ns["metadata"]["labels"].get("team", ""))

        return [Mutator(name="team-labels", mutate=mutate)]

    @hookimpl
    def admission_host_controllers(self):
        return [Controller(name="never-offline", run=lambda stop: pytest.fail("controllers never run here"))]

    @hookimpl
    def admission_host_shutdown(self):
        self.shut_down = True


@pytest.fixture
def plugin():
    return TeamLabels()


def test_create_with_cached_objects(plugin):
    harness = PluginHarness(("teams", plugin), objects=[namespace("shop", {"team": "red"})])
    result = harness.create(pod("web", namespace="shop"))
    assert isinstance(result, Result)
    assert result.allowed
    assert result.object["metadata"]["labels"] == {"team": "red"}
    assert result.patch == [{"op": "add", "path": "/metadata/labels", "value": {"team": "red"}}]
    assert result.audit_annotations == {"team": "red"}
    assert result.warnings == []
    assert harness.store("team-namespaces").keys() == ["shop"]
    harness.close()
    assert plugin.shut_down


def test_options_are_keyed_by_the_plugin_name(plugin):
    harness = PluginHarness(("teams", plugin), options={"teams": {"label": "owner"}},
                            objects=[namespace("shop", {"team": "red"})])
    assert plugin.options == {"label": "owner"}
    assert harness.create(pod("web", namespace="shop")).object["metadata"]["labels"] == {"owner": "red"}


def test_config_takes_the_config_files_keys(plugin):
    # A deployment's whole file: other plugins' sections and enabledPlugins do not get in the way.
    config = {"plugins": {"teams": {"label": "owner"}, "pod_deletion_cost": None}, "admissionDeadlineSeconds": 2,
              "enabledPlugins": ["eci_profile"]}
    harness = PluginHarness(("teams", plugin), config=config, objects=[namespace("shop", {"team": "red"})])
    assert plugin.options == {"label": "owner"} and harness.host.config.admission_deadline_seconds == 2
    assert harness.create(pod("web", namespace="shop")).object["metadata"]["labels"] == {"owner": "red"}
    # options= go into its plugins section
    PluginHarness(("teams", plugin), config={"plugins": {"teams": {"label": "a"}}}, options={"teams": {"label": "b"}})
    assert plugin.options == {"label": "b"}


@pytest.mark.parametrize("config", [
    {"prot": 9443},
    {"enabled_plugins": ["teams"]},
    {"port": "9443"},
    {"plugins": {"teams": ["label"]}},
    {"leaderElection": {"enabled": "no"}},
])
def test_a_config_mapping_is_refused_as_the_config_file_would_be(plugin, tmp_path, config):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as from_file:
        load_file(str(path))
    with pytest.raises(ConfigError) as from_mapping:
        PluginHarness(("teams", plugin), config=config)
    assert str(from_mapping.value) == str(from_file.value).replace(f"config file {path}:", "config:")


@pytest.mark.parametrize("plugins, message", [
    ({"Teams": {}}, "config has options for unknown plugin 'Teams' (did you mean 'teams'?); installed: "),
    ({"pod_deletion_cost": {"label": 3}}, "plugin 'pod_deletion_cost': option label must be a string, got 3"),
])
def test_a_config_mappings_plugin_options_are_checked_as_the_config_files(plugin, plugins, message):
    with pytest.raises(PluginError) as info:
        PluginHarness(("teams", plugin), pod_deletion_cost, config={"plugins": plugins})
    assert str(info.value).startswith(message)


def test_a_config_object_is_not_changed(plugin):
    config = Config(port=1)
    PluginHarness(("teams", plugin), config=config, options={"teams": {"label": "owner"}})
    assert plugin.options == {"label": "owner"} and config.plugin_options == {}


def test_warnings_and_denials(plugin):
    harness = PluginHarness(("teams", plugin))
    result = harness.create(pod("web", namespace="elsewhere"))
    assert result.allowed and result.patch == [] and result.object == pod("web", namespace="elsewhere")
    assert result.warnings == ["namespace elsewhere not in the cache"]
    denied = harness.create(pod("web", namespace="closed"))
    assert not denied.allowed
    assert denied.status == {"code": 403, "message": "teams: namespace closed takes no pods"}


def test_send_a_whole_review(plugin):
    harness = PluginHarness(("teams", plugin), objects=[namespace("shop", {"team": "red"})])
    sent = review(pod("web", namespace="shop"), api_version="admission.k8s.io/v1beta1", uid="u-7")
    result = harness.send(sent)
    assert result.review["apiVersion"] == "admission.k8s.io/v1beta1"
    assert result.response["uid"] == "u-7"
    # An UPDATE is not routed to a CREATE mutator.
    update = harness.send(review(pod("web", namespace="shop"), operation="UPDATE", old_object=pod("web")))
    assert update.patch == []


def test_caches_are_synced_and_controllers_do_not_run(plugin):
    harness = PluginHarness(("teams", plugin), kube=object())
    assert harness.host.kube is not None
    assert harness.store("team-namespaces").has_synced()
    assert harness.host.readiness() == []
    assert harness.host.reflectors == [] and not harness.host.is_leader()


def test_only_the_given_plugins_are_loaded(plugin):
    harness = PluginHarness(("teams", plugin))
    assert [name for name, _ in harness.host.pluginmanager.list_name_plugin()] == ["teams"]


def test_an_installed_module_is_named_by_its_entry_point():
    harness = PluginHarness(pod_deletion_cost, options={"pod_deletion_cost": {"label": "cost"}})
    assert harness.host.pluginmanager.has_plugin("pod_deletion_cost")
    result = harness.create(pod("p", labels={"cost": "9"}))
    assert result.object["metadata"]["annotations"] == {"controller.kubernetes.io/pod-deletion-cost": "9"}


def test_builders():
    p = pod("web", namespace="ns", labels={"a": "b"}, annotations={"c": "d"})
    assert p["metadata"] == {"name": "web", "namespace": "ns", "labels": {"a": "b"}, "annotations": {"c": "d"}}
    assert p["spec"]["containers"][0]["name"] == "main"
    assert namespace("ns", {"x": "y"}) == {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": "ns", "labels": {"x": "y"}}}
    n = node("vk", {"type": "virtual-kubelet"}, taints=[{"key": "k", "effect": "NoSchedule"}])
    assert n["metadata"]["labels"] == {"type": "virtual-kubelet"} and n["spec"]["taints"][0]["key"] == "k"
    b = binding("web", "vk", namespace="ns")
    assert b["target"] == {"apiVersion": "v1", "kind": "Node", "name": "vk"}
    r = review(b)["request"]
    assert (r["resource"]["resource"], r["subResource"], r["namespace"], r["name"]) == ("pods", "binding", "ns", "web")
    r = review(p, dry_run=True)["request"]
    assert r["dryRun"] is True and r["resource"]["resource"] == "pods" and "subResource" not in r


def test_the_harness_is_a_context_manager_and_a_pytest_fixture(plugin_harness):
    from framework.testing import PluginHarness
    from plugins.examples import pod_deletion_cost

    with PluginHarness(pod_deletion_cost) as harness:
        assert harness.create(pod("p", labels={"example.com/deletion-cost": "3"})).patch
    assert harness.host._stopped
    made = plugin_harness(pod_deletion_cost)
    assert made.create(pod("p", labels={"example.com/deletion-cost": "3"})).patch


# -- the idempotency check and the fake API client ----------------------------------------------
class AppendsEveryTime:
    @hookimpl
    def admission_host_mutators(self):
        def mutate(req):  # a classic mistake: adds its toleration again on every call
            req.object["spec"].setdefault("tolerations", []).append({"key": "spot", "operator": "Exists"})
        return [Mutator(name="appends", mutate=mutate)]


def test_a_mutator_that_is_not_idempotent_fails_the_test():
    with PluginHarness(AppendsEveryTime()) as harness:
        with pytest.raises(AssertionError, match="not idempotent.*tolerations/-"):
            harness.create(pod("p"))
    with PluginHarness(AppendsEveryTime(), idempotent=False) as harness:
        assert harness.create(pod("p")).patch


class Stamps:
    """Leaves what JSON carries in another form (a tuple, a str subclass), or cannot carry at all."""

    def __init__(self, value):
        self.value = value

    @hookimpl
    def admission_host_mutators(self):
        def mutate(req):
            req.object["metadata"].setdefault("annotations", {})["stamped"] = self.value
        return [Mutator(name="stamps", mutate=mutate)]


class Tag(str):
    pass


@pytest.mark.parametrize("left, sent", [(("a", 1), ["a", 1]), (Tag("v2"), "v2")])
def test_the_result_shows_the_patch_as_the_api_server_decodes_it(left, sent):
    with PluginHarness(Stamps(left)) as harness:
        result = harness.create(pod("p"))
    assert result.patch == [{"op": "add", "path": "/metadata/annotations", "value": {"stamped": sent}}]
    assert type(result.patch[0]["value"]["stamped"]) is type(sent)
    assert type(result.object["metadata"]["annotations"]["stamped"]) is type(sent)


def test_a_datetime_left_in_the_object_is_the_mutators_failure_not_a_string_in_the_patch():
    with PluginHarness(Stamps(datetime.datetime(2024, 5, 1, 12, 0))) as harness:
        result = harness.create(pod("p"))
    assert result.allowed and result.patch == [] and "annotations" not in result.object["metadata"]
    assert result.warnings == ["plugin 'Stamps' mutator 'stamps' failed and was skipped: left a value that is not "
                               "JSON at /metadata/annotations/stamped (a datetime)"]


class LabelsThroughTheApi:
    """Labels the pod's namespace through the API server the first time it sees a pod there."""

    @hookimpl
    def admission_host_mutators(self, host):
        def mutate(req):
            if req.dry_run:
                return
            path = f"/api/v1/namespaces/{req.namespace}"
            ns = host.kube.get(path, timeout=req.time_left())
            if "seen" not in ns["metadata"].get("labels", {}):
                host.kube.patch(path, {"metadata": {"labels": {"seen": "yes"}}}, timeout=req.time_left())
            req.object["metadata"].setdefault("annotations", {})["namespace-seen"] = "yes"
        return [Mutator(name="through-api", mutate=mutate)]


def test_the_fake_api_client_answers_records_and_fails_on_request():
    from framework import ApiError
    from framework.testing import FakeKube

    kube = FakeKube({"/api/v1/namespaces/shop": namespace("shop")})
    with PluginHarness(LabelsThroughTheApi(), kube=kube) as harness:
        assert harness.create(pod("a", namespace="shop")).allowed
        assert harness.create(pod("b", namespace="shop")).allowed
        assert kube.writes("PATCH") == [("PATCH", "/api/v1/namespaces/shop", {"metadata": {"labels": {"seen": "yes"}}})]
        assert kube.objects["/api/v1/namespaces/shop"]["metadata"]["labels"] == {"seen": "yes"}
        assert [c[0] for c in kube.calls] == ["GET", "PATCH", "GET"]  # the dry-run second pass made none
        # no such namespace: a 404, as from a server; the mutator's failure is its own
        result = harness.create(pod("c", namespace="gone"))
        assert result.allowed and "404" in result.warnings[0]
        kube.fail("GET", ApiError(500, "etcd is down"), path="/api/v1/namespaces/shop")
        assert "etcd is down" in harness.create(pod("d", namespace="shop")).warnings[0]
    assert kube.get("/api/v1/namespaces")["items"][0]["metadata"]["name"] == "shop"
    created = kube.post("/api/v1/namespaces/shop/events", {"metadata": {"generateName": "x."}, "reason": "R"})
    assert created["metadata"]["name"].startswith("x.")
    with pytest.raises(ApiError) as info:
        kube.patch("/api/v1/namespaces/shop", [{"op": "test", "path": "/metadata/name", "value": "no"}],
                   content_type="application/json-patch+json")
    assert info.value.status == 422
