#!/usr/bin/env python3
"""The whole thing on one machine: a real control plane, the host, the seed's Selectors, pods.

Starts the test cluster on loopback (tests/e2e/cluster.py: current Kubernetes with its
controllers and KWOK's simulated nodes, built once by hack/cluster/build.sh), runs `admission-host serve` with its ServiceAccount's token,
registers the webhook, applies the original README's Selectors plus two more, creates sample
pods on two small normal nodes and one virtual node, prints what happened, and keeps it all
running until Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framework import KubeClient  # noqa: E402
from tests.e2e import cluster  # noqa: E402
from tests.e2e.host import (HostProcess, install_crds, kubectl, register_webhook,  # noqa: E402
                            service_account_kubeconfig, wait_for)

EXAMPLES = REPO / "deploy" / "examples"
VNODE = {"k8s.aliyun.com/vnode": "true"}
EXTRA_SELECTORS = [
    {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "batch-burst"},
     "spec": {"objectLabels": {"matchLabels": {"app": "batch"}}, "policy": {"normalNodePrefer": {}},
              "effect": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": -1000}}}},
    {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "db-stays-home"},
     "spec": {"objectLabels": {"matchLabels": {"app": "db"}}, "policy": {"normalNodeOnly": {}}}},
]
PODS = [("nginx-1", "nginx"), ("nginx-2", "nginx"), ("batch-1", "batch"), ("batch-2", "batch"),
        ("batch-3", "batch"), ("db-1", "db"), ("plain-1", "plain")]


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def added(before: dict, after: dict) -> str:
    out = []
    for t in after["spec"].get("tolerations") or ():
        if t not in (before["spec"].get("tolerations") or []) and t.get("key", "").startswith("k8s.aliyun.com"):
            out.append("toleration")
    for key in after["spec"].get("nodeSelector") or {}:
        if key not in (before["spec"].get("nodeSelector") or {}):
            out.append(f"nodeSelector {key}")
    for field in ("annotations", "labels"):
        for key, value in (after["metadata"].get(field) or {}).items():
            if key not in (before["metadata"].get(field) or {}):
                out.append(f"{field[:-1]} {key}={value}")
    return ", ".join(out) or "-"


def resolve_winners(admin: KubeClient, pods) -> dict:
    """Which Selector each pod got, decided as the host decides, from the cluster's objects."""
    from framework.config import Config
    from framework.host import Host
    from plugins.eci_profile import plugin as eci

    host = Host(Config(enabled_plugins=["eci_profile"]))
    objects = []
    for path, kind, api_version in (("/apis/eci.aliyun.com/v1/selectors", "Selector", "eci.aliyun.com/v1"),
                                    ("/api/v1/namespaces", "Namespace", "v1"), ("/api/v1/nodes", "Node", "v1")):
        objects += [{**o, "kind": kind, "apiVersion": api_version} for o in admin.get(path)["items"]]
    host.load_objects(objects)
    host.start()
    profile = eci.profile_of(host)
    out = {}
    for name in pods:
        winner, _ = profile.resolve(admin.get(f"/api/v1/namespaces/default/pods/{name}"), "default")
        out[name] = winner.name if winner else "-"
    host.stop()
    return out


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="admission-host-demo-"))
    release = cluster.selected_release()
    step(f"Kubernetes {release.minor} binaries (built once per machine)")
    bin_dir = cluster.ensure_binaries(release)
    parts = "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK" if release.simulated_nodes \
        else "etcd, kube-apiserver, kube-scheduler"
    step(f"starting {parts} (state in {workdir})")
    cp = cluster.ControlPlane(workdir / "cluster", bin_dir, release).start()
    host = None
    try:
        admin = KubeClient.from_kubeconfig(str(cp.admin_kubeconfig))
        step("installing the Selector CRD and the host's RBAC (deploy/)")
        install_crds(cp, admin)
        sa_kubeconfig = service_account_kubeconfig(cp, admin, workdir / "host.kubeconfig")
        step("starting admission-host serve (with its ServiceAccount's token) and registering the webhook")
        cert, key = cp.certs.serving_cert("webhook", ips=["127.0.0.1"])
        host = HostProcess(workdir / "host", sa_kubeconfig, cert, key, cp.certs.ca_path).start()
        register_webhook(admin, f"{host.url}/mutate", cp.certs.ca_pem)
        step("nodes: two small normal nodes (1 CPU) and one virtual node (labelled and tainted)")
        core = __import__("kubernetes").client.CoreV1Api(cp.api_client())
        cluster.create_node(core, "normal-1", cpu="1")
        cluster.create_node(core, "normal-2", cpu="1")
        cluster.create_node(core, "virtual-1", labels=VNODE, cpu="100",
                            taints=[{"key": "k8s.aliyun.com/vnode", "value": "true", "effect": "NoSchedule"}])
        step("applying the original README's Selectors as written, and two more")
        for path in sorted(EXAMPLES.glob("*.yaml")):
            kubectl(cp, "apply", "-f", str(path))
        import yaml

        for body in EXTRA_SELECTORS:
            kubectl(cp, "apply", "-f", "-", input=yaml.safe_dump(body))
        for name in ("test-fair", "test-normal-node-prefer", "test-virtual-node-only", "batch-burst", "db-stays-home"):
            wait_for(lambda: (lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"])(
                admin.get(f"/apis/eci.aliyun.com/v1/selectors/{name}")), 20, what=f"Selector {name}")
        print(kubectl(cp, "get", "selectors").stdout)
        step("creating sample pods (600m CPU each: one fits per normal node)")
        sent = {}
        for name, app in PODS:
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
                    "spec": {"containers": [{"name": "main", "image": "nginx",
                                             "resources": {"requests": {"cpu": "600m"}}}]}}
            sent[name] = body
            admin.post("/api/v1/namespaces/default/pods", body)
            time.sleep(0.3)
        time.sleep(3)
        winners = resolve_winners(admin, [name for name, _ in PODS])
        rows = [("POD", "APP", "SELECTOR", "NODE", "ADDED BY THE HOST")]
        for name, app in PODS:
            stored = admin.get(f"/api/v1/namespaces/default/pods/{name}")
            rows.append((name, app, winners.get(name, "-"), stored["spec"].get("nodeName") or "(pending)",
                         added(sent[name], stored)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        print()
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        print()
        print("test-fair (priority 3) wins for app=nginx over the priority-0 seed Selectors. batch-3 found no")
        print("room on normal nodes: the burst controller added the toleration and it went to virtual-1 with")
        print("pod-deletion-cost -1000. db-1 (normalNodeOnly) waits for a normal node.")
        print()
        print(f"The cluster keeps running. In another shell:\n  export KUBECONFIG={cp.admin_kubeconfig}")
        print("  kubectl get pods -o wide; kubectl get selectors")
        print(f"  admission-host explain default/batch-3 --kubeconfig {cp.admin_kubeconfig}")
        print(f"Host log: {host.log_path}\nPress Ctrl-C to stop everything.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        if host is not None:
            host.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
