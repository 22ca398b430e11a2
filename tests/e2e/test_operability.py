"""What an on-call engineer sees: metrics, explain against the live cluster, the lease on shutdown."""

import os
import subprocess
import sys

from tests.e2e.conftest import TOLERATION
from tests.e2e.host import REPO, wait_for


def fair(name, app):
    return {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
            "spec": {"objectLabels": {"matchLabels": {"app": app}}, "policy": {"fair": {}}}}


def metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_tell_what_happened(k8s):
    ns = k8s.namespace()
    k8s.apply_selector(fair(f"{k8s.id}-m", k8s.id))
    assert TOLERATION in k8s.pod("p", ns, labels={"app": k8s.id})["spec"]["tolerations"]
    status, text = k8s.host.get("/metrics")
    assert status == 200
    assert metric(text, "admission_host_admissions_total", resource="pods", operation="CREATE", outcome="patched") >= 1
    assert metric(text, "admission_host_mutator_calls_total", mutator="eci-profile-pod", outcome="ok") >= 1
    assert metric(text, "eci_profile_selector_matches_total", selector=f"{k8s.id}-m", policy="fair", phase="create") == 1
    assert metric(text, "admission_host_cache_objects", watch="eci-selectors") >= 1
    assert metric(text, "admission_host_watch_last_sync_timestamp_seconds", watch="eci-nodes") > 0
    assert metric(text, "admission_host_leader") == 1
    assert metric(text, "admission_host_certificate_expiry_timestamp_seconds") > 0
    assert "admission_host_admission_duration_seconds_bucket" in text


def test_explain_a_live_pod(k8s):
    ns = k8s.namespace()
    k8s.apply_selector(fair(f"{k8s.id}-x", k8s.id))
    k8s.pod("live", ns, labels={"app": k8s.id})
    env = dict(os.environ, KUBECONFIG=str(k8s.cp.admin_kubeconfig))
    out = subprocess.run([sys.executable, "-m", "framework.cli", "explain", f"{ns}/live", "--plugins", "eci_profile",
                          "--kubeconfig", str(k8s.cp.admin_kubeconfig)], env=env, cwd=str(REPO),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"winner: {k8s.id}-x (fair), highest priority (0)" in out.stdout
    assert "no change" in out.stdout  # it was mutated at creation: a second pass adds nothing


def test_sigterm_releases_the_leader_lease(k8s):
    lease = "/apis/coordination.k8s.io/v1/namespaces/admission-host/leases/admission-host"
    assert k8s.admin.get(lease)["spec"]["holderIdentity"]
    assert k8s.host.stop() == 0
    try:
        assert k8s.admin.get(lease)["spec"]["holderIdentity"] == ""
    finally:
        k8s.host.start()
    wait_for(lambda: k8s.admin.get(lease)["spec"]["holderIdentity"], 30, what="lease taken again")
