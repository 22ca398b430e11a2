"""``kubectl eci``: the kubectl plugin installed with the package, run by the release's kubectl."""

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def kubectl_eci(k8s, *args):
    """kubectl finds ``kubectl-eci`` on PATH, as it finds any plugin."""
    plugin = shutil.which("kubectl-eci")
    assert plugin, "kubectl-eci is not installed (pip install -e .)"
    env = dict(os.environ, KUBECONFIG=str(k8s.cp.admin_kubeconfig),
               PATH=os.path.dirname(plugin) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([k8s.cp.kubectl, "eci", *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_selectors_lists_what_each_selector_matches_and_wins(k8s):
    ns = k8s.namespace(labels={"env": k8s.id})
    high = f"{k8s.id}-high"
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": high},
                        "spec": {"objectLabels": {"matchLabels": {"app": k8s.id}}, "priority": 9,
                                 "maxVirtualPods": 5, "policy": {"normalNodePrefer": {}}}})
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-ns"},
                        "spec": {"namespaceLabels": {"matchLabels": {"env": k8s.id}}, "priority": 1,
                                 "policy": {"fair": {}}}})
    for i in range(3):
        k8s.pod(f"web-{i}", ns, labels={"app": k8s.id})
    k8s.pod("other", ns, labels={"app": "other"})
    rows = {line.split()[0]: line.split() for line in kubectl_eci(k8s, "selectors").splitlines()[1:]}
    # NAME PRIORITY POLICY PODS OBJECT-LABELS NAMESPACE-LABELS VIRTUAL TIERS WAITING VALID
    assert rows[high][1:5] == ["9", rows[high][2], "3", f"app={k8s.id}"] and rows[high][2].startswith("normalNodePrefer")
    assert rows[high][6] == "0/5" and rows[high][-1] == "True"
    assert rows[f"{k8s.id}-ns"][3] == "1" and rows[f"{k8s.id}-ns"][5] == f"env={k8s.id}"
    names = [line.split()[0] for line in kubectl_eci(k8s, "selectors").splitlines()[1:]]
    assert names.index(high) < names.index(f"{k8s.id}-ns")  # in the order they win


def test_explain_names_the_winner_of_a_live_pod(k8s):
    ns = k8s.namespace()
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-v"},
                        "spec": {"objectLabels": {"matchLabels": {"app": k8s.id}}, "policy": {"virtualNodeOnly": {}}}})
    k8s.pod("web", ns, labels={"app": k8s.id})
    out = kubectl_eci(k8s, "explain", "web", "-n", ns)
    assert f"pod {ns}/web" in out and f"winner: {k8s.id}-v (virtualNodeOnly)" in out, out
