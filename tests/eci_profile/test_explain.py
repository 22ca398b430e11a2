"""admission-host explain: every Selector considered, why it matched or not, who won."""

import contextlib
import logging

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


@contextlib.contextmanager
def root_logger_kept():
    """main() sets up the root logger for its process, writing to the stderr pytest captures for this
    test only: put back the handlers it replaced (pytest's), so later lines do not go to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_explain_command_offline(tmp_path, capsys):
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: nginx}}\n"
                        "spec: {containers: [{name: a, image: nginx}]}\n")
    ns_file = tmp_path / "ns.yaml"
    import yaml

    ns_file.write_text(yaml.safe_dump(namespace("default")))
    with root_logger_kept():
        code = main(["explain", str(pod_file), "--plugins", "eci_profile", "--objects", str(ns_file),
                     str(EXAMPLES / "virtual-node-only.yaml"), str(EXAMPLES / "normal-node-prefer.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "winner: test-normal-node-prefer (normalNodePrefer), highest priority (0), tie with " \
           "test-virtual-node-only broken by name" in out
    assert "no change" in out


def test_explain_tells_burst_timing_cap_scale_in_and_drain_back(make_harness):
    sel = selector("burst", "normalNodePrefer", object_labels={"matchLabels": {"app": "web"}})
    sel["spec"]["policy"]["normalNodePrefer"] = {"burstAfter": "30s", "waitForAutoscaler": True, "maxWait": "5m"}
    sel["spec"].update(maxVirtualPods=20, scaleIn="VirtualFirst", drainBack={"after": "10m", "maxPerMinute": 3})
    waiting = pod("p", labels={"app": "web"})
    waiting["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                         "reason": "Unschedulable", "lastTransitionTime": "2027-01-15T08:00:00Z"}]}
    text = "\n".join(eci.admission_host_explain(make_harness(sel).host, waiting))
    assert ("burst timing: 30s after it becomes Unschedulable; held up to 5m while an autoscaler says it is "
            "adding a node for it; Unschedulable since 2027-01-15T08:00:00Z, so not before 2027-01-15T08:00:30Z") in text
    assert "cap: at most 20 of its pods on virtual nodes; 0 there now" in text
    assert "scale-in: bound to a virtual node it gets pod-deletion-cost -1000, so it goes first" in text
    assert "drain-back: after 10m on a virtual node it is evicted when a normal node has room (at most 3 a minute)" in text


def test_explain_says_why_a_daemonset_pod_is_left_alone(make_harness):
    p = pod("agent", labels={"app": "web"})
    p["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": "agent", "uid": "u", "controller": True}]
    text = "\n".join(eci.admission_host_explain(make_harness(selector("all")).host, p))
    assert "left alone: the pod is owned by a DaemonSet" in text and "winner" not in text


def test_explain_says_a_pod_created_on_a_node_keeps_its_placement(make_harness):
    harness = make_harness(selector("all"))
    for node, says in (("vk-1", "it gets the effect (a virtual node)"),
                       ("normal-1", "it gets the effect only on a virtual node, and this one is not")):
        p = pod("direct", labels={"app": "web"})
        p["spec"]["nodeName"] = node
        text = "\n".join(eci.admission_host_explain(harness.host, p))
        assert f"created on node {node} (spec.nodeName: it bypasses the scheduler): its placement is left alone" \
               in text and says in text, text
