"""The benchmarks that need a cluster, at a tiny size: ``python -m bench.scale`` (the rehearsal) and
``python -m bench.spike`` run end to end and report every figure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cluster import selected_release

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not selected_release().simulated_nodes,
                                                  reason="needs kube-controller-manager and KWOK (the current release)")]
REPO = Path(__file__).resolve().parents[2]


def test_the_scale_rehearsal_at_a_tiny_size(tmp_path):
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, "-m", "bench.scale", "--nodes", "20", "--pods", "100", "--selectors", "10",
                           "--burst", "50", "--out", str(out)], cwd=str(REPO), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert not r["limits"]
    assert [(p["what"], p.get("made", p.get("reached"))) for p in r["phases"]] == [
        ("nodes", 20), ("nodes Ready", 20), ("namespaces", 2), ("Selectors", 10), ("pods", 100), ("pods Running", 100)]
    assert r["host_ready_s"] > 0 and r["memory_host_ready"]["admission-host"]["VmHWM"] > 0
    b = r["burst"]
    assert b["running"] == 50 and b["all_running_s"] is not None and b["all_scheduled_s"] is not None
    # More than the normal nodes' room: some burst to the virtual nodes, each through the webhook.
    assert 0 < b["on_virtual_nodes"] < 50 and b["webhook_calls"] >= 100 and b["webhook_p99_ms"] is not None
    assert b["host_api_calls_per_s"].get("PATCH pods", 0) > 0
    k = r["kubectl_eci_selectors"]
    assert k["exit"] == 0 and k["selectors"] == 10 and k["pods_counted"] >= 50
    assert "| admission-host |" in proc.stdout and "`kubectl eci selectors`" in proc.stdout


def test_the_spike_at_a_tiny_size():
    proc = subprocess.run([sys.executable, "-m", "bench.spike", "--runs", "1", "--pods", "60"], cwd=str(REPO),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {r["way"]: r for r in json.loads((REPO / "bench" / "out" / "spike.json").read_text())}
    assert set(results) == {"without", "ceiling", "with"}
    # Room for 40 on the normal nodes: the host's normalNodePrefer fills them first; pods tolerated at
    # creation (the other ways) may go to virtual nodes sooner.
    assert all(r["running"] == 60 and r["virtual_pods"] >= 20 for r in results.values()), results
    assert results["with"]["virtual_pods"] == 20
    host = results["with"]
    # The labels ride on the Binding (1.35+): on the pod from the moment it is bound.
    assert host["never_labelled"] == 0 and host["labelled_before_running_pct"] == 100
    assert host["webhook_latency"] and host["webhook_cpu_s"] > 0
    # Each webhook counts the TLS connections the API server opened to it over the spike (at least one).
    assert all(r["webhook_connections"] >= 1 for r in (host, results["ceiling"])), results
    assert "| 1: with the host |" in proc.stdout and "| 1: constant-answer webhook |" in proc.stdout
