"""framework/webhook.py: the webhook configuration derived from what the enabled mutators declare,
and ``admission-host webhook-config``, which prints it."""

from pathlib import Path

import pytest
import yaml

from framework import Mutator
from framework.cli import main
from framework.config import Config, load_file
from framework.host import Host
from framework.plugins import PluginError
from framework.webhook import SKIPS, configuration, match_conditions, rules, serves_match_conditions

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
ECI_SKIPS = ("daemonset-pods", "static-pods", "mirror-pods")

# A plugin that wants DaemonSet pods (it labels them), and skips the kubelets' own pods.
DAEMONSET_MARKER = """
from framework import Mutator, hookimpl


@hookimpl
def admission_host_mutators():
    def mutate(request):
        meta = request.object["metadata"]
        if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or ()):
            meta.setdefault("labels", {})["example.com/daemon"] = "true"

    return [Mutator(name="daemonset-marker", mutate=mutate, skip=("static-pods", "mirror-pods"))]
"""


def noop(request):
    pass


def names(conditions):
    return [c["name"] for c in conditions]


# -- the derivation ---------------------------------------------------------------------------------------
def test_a_condition_is_rendered_for_what_every_mutator_skips():
    eci = Mutator(name="eci", mutate=noop, skip=ECI_SKIPS)
    assert names(match_conditions([eci])) == ["not-a-daemonset-pod", "not-a-static-pod", "not-a-mirror-pod"]
    # A second plugin that wants DaemonSet pods: that condition goes, or it would never see one.
    daemons = Mutator(name="daemons", mutate=noop, skip=("mirror-pods", "static-pods"))
    assert names(match_conditions([eci, daemons])) == ["not-a-static-pod", "not-a-mirror-pod"]
    # One that skips nothing: everything is sent.
    assert match_conditions([eci, daemons, Mutator(name="all", mutate=noop)]) == []


def test_only_mutators_that_may_see_a_pod_have_a_say():
    eci = Mutator(name="eci", mutate=noop, skip=ECI_SKIPS)
    expected = match_conditions([eci])
    # Their objects are never Pods (a Binding, an Eviction, a Deployment, DELETE's null object),
    # which every condition lets through.
    for other in (Mutator(name="bindings", mutate=noop, resources="pods/binding"),
                  Mutator(name="evictions", mutate=noop, resources="pods/eviction"),
                  Mutator(name="deployments", mutate=noop, resources="deployments", group="apps"),
                  Mutator(name="deletions", mutate=noop, operations="DELETE")):
        assert match_conditions([eci, other]) == expected, other.name
    for other in (Mutator(name="updates", mutate=noop, operations="UPDATE"),
                  Mutator(name="everything", mutate=noop, resources="*/*", group="*", operations="*"),
                  Mutator(name="status", mutate=noop, resources="pods/status", operations="UPDATE")):
        assert match_conditions([eci, other]) == [], other.name
    assert match_conditions([Mutator(name="bindings", mutate=noop, resources="pods/binding", skip=ECI_SKIPS)]) == []


def test_conditions_pass_what_is_not_a_pod_and_read_no_subresource():
    for skip in SKIPS.values():
        assert skip.expression.startswith('object == null || object.kind != "Pod" || '), skip
        assert "subResource" not in skip.expression


def test_an_unknown_skip_is_refused_with_a_hint():
    with pytest.raises(ValueError, match=r"unknown skip 'daemonsets' \(did you mean 'daemonset-pods'\?\); known: "):
        Mutator(name="m", mutate=noop, skip=("daemonsets",))
    assert Mutator(name="m", mutate=noop, skip="static-pods").skip == ("static-pods",)


def test_rules_cover_every_resource_and_operation_wanted_once():
    assert rules([Mutator(name="a", mutate=noop), Mutator(name="b", mutate=noop, resources="pods/binding")]) == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods", "pods/binding"],
         "scope": "*"}]
    got = rules([Mutator(name="a", mutate=noop, operations=("UPDATE", "CREATE")),
                 Mutator(name="b", mutate=noop, operations="CREATE", resources=("pods", "services")),
                 Mutator(name="c", mutate=noop, group="apps", resources="deployments", operations="*")])
    assert got == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"],
         "scope": "*"},
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["services"], "scope": "*"},
        {"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["*"], "resources": ["deployments"], "scope": "*"}]


@pytest.mark.parametrize("version,served", [
    ({"major": "1", "minor": "37"}, True), ({"major": "1", "minor": "28"}, True),
    ({"major": "1", "minor": "28+"}, True),
    ({"major": "1", "minor": "27"}, False), ({"major": "1", "minor": "20"}, False), ({}, False),
], ids=["1.37", "1.28", "1.28+", "1.27", "1.20", "unknown"])
def test_match_conditions_are_served_from_1_28(version, served):
    assert serves_match_conditions(version) is served


# -- deploy/ and the host agree ----------------------------------------------------------------------------
def test_deploy_webhook_is_what_the_host_renders_for_its_config():
    """deploy/base/webhook.yaml (and so the chart, which a test keeps equal to deploy/) cannot drift
    from what the host derives, nor from what it sets at start-up."""
    host = Host(load_file(str(BASE / "config.yaml")))
    assert yaml.safe_load((BASE / "webhook.yaml").read_text()) == configuration(host.pipeline.mutators)


def test_eci_profile_skips_daemonset_static_and_mirror_pods_only():
    """Pods created with spec.nodeName are sent: on a virtual node they get their effect at creation."""
    host = Host(load_file(str(BASE / "config.yaml")))
    assert names(match_conditions(host.pipeline.mutators)) == [
        "not-a-daemonset-pod", "not-a-static-pod", "not-a-mirror-pod"]


# -- admission-host webhook-config -------------------------------------------------------------------------
def run(capsys, *args):
    assert main(["webhook-config", *args]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_webhook_config_for_two_plugins_drops_the_daemonset_condition(install_plugin, tmp_path, capsys):
    install_plugin("daemonset_marker", "daemonset_marker_plugin", DAEMONSET_MARKER)
    (tmp_path / "config.yaml").write_text("enabledPlugins: [eci_profile, daemonset_marker]\n")
    (hook,) = run(capsys, "--config", str(tmp_path / "config.yaml"))["webhooks"]
    assert names(hook["matchConditions"]) == ["not-a-static-pod", "not-a-mirror-pod"]
    assert hook["rules"] == yaml.safe_load((BASE / "webhook.yaml").read_text())["webhooks"][0]["rules"]
    (hook,) = run(capsys, "--plugins", "daemonset_marker")["webhooks"]
    assert names(hook["matchConditions"]) == ["not-a-static-pod", "not-a-mirror-pod"]
    assert hook["rules"][0]["resources"] == ["pods"]


def test_webhook_config_names_and_no_match_conditions(capsys):
    config = run(capsys, "--plugins", "eci_profile", "--webhook-configuration", "edge", "--service-name", "edge-svc",
                 "--namespace", "infra", "--no-match-conditions")
    assert config["metadata"]["name"] == "edge"
    (hook,) = config["webhooks"]
    assert hook["clientConfig"]["service"] == {"name": "edge-svc", "namespace": "infra", "path": "/mutate", "port": 443}
    assert "matchConditions" not in hook


def test_a_plugin_with_an_unknown_skip_stops_the_command(install_plugin, capsys):
    install_plugin("typo", "typo_plugin", DAEMONSET_MARKER.replace('"static-pods", "mirror-pods"', '"static"'))
    assert main(["webhook-config", "--plugins", "typo"]) == 2
    assert "plugin 'typo'" in capsys.readouterr().err
    with pytest.raises(PluginError, match="unknown skip 'static'"):
        Host(Config(enabled_plugins=["typo"]))
