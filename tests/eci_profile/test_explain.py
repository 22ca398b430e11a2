"""admission-host explain: every Selector considered, why it matched or not, who won."""

from framework.cli import main
from framework.testing import namespace, pod
from plugins.eci_profile import plugin as eci

from .conftest import EXAMPLES, selector


def test_explain_hook_says_why(make_harness):
    harness = make_harness(selector("b-tie", priority=3), selector("a-tie", priority=3),
                           selector("other-app", priority=9, object_labels={"matchLabels": {"app": "db"}}),
                           selector("prod", namespace_labels={"matchLabels": {"env": "prod"}}))
    lines = eci.admission_host_explain(harness.host, pod("p", labels={"app": "web"}))
    text = "\n".join(lines)
    assert "Selector other-app (priority 9, fair): objectLabels: pod needs app=db, has app=web" in text
    assert "Selector prod (priority 0, fair): namespaceLabels: namespace needs env=prod, has no env" in text
    assert "winner: a-tie (fair), highest priority (3), tie with b-tie broken by name" in text


def test_explain_ignores_non_pods(make_harness):
    assert eci.admission_host_explain(make_harness().host, {"kind": "Binding"}) is None


def test_explain_command_offline(tmp_path, capsys):
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: nginx}}\n"
                        "spec: {containers: [{name: a, image: nginx}]}\n")
    ns_file = tmp_path / "ns.yaml"
    import yaml

    ns_file.write_text(yaml.safe_dump(namespace("default")))
    code = main(["explain", str(pod_file), "--plugins", "eci_profile", "--objects", str(ns_file),
                 str(EXAMPLES / "virtual-node-only.yaml"), str(EXAMPLES / "normal-node-prefer.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "winner: test-normal-node-prefer (normalNodePrefer), highest priority (0), tie with " \
           "test-virtual-node-only broken by name" in out
    assert "no change" in out
