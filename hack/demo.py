#!/usr/bin/env python3
"""The whole thing on one machine: a real control plane, the host, the seed's Selectors, pods.

Starts the test cluster on loopback (tests/e2e/cluster.py: current Kubernetes with its
controllers and KWOK's simulated nodes, built once by hack/cluster/build.sh), runs `admission-host
serve` with its ServiceAccount's token, registers the webhook, applies the original README's
Selectors plus two more, creates sample pods on two small normal nodes and one virtual node, and
prints what happened, read back from the cluster: where each pod went and why, what the host
added, an `explain`, and the host's Events. It then keeps everything running until Ctrl-C, or with
``--once`` stops it all and exits (0 when every step worked).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framework import KubeClient  # noqa: E402
from tests.e2e import cluster  # noqa: E402
from tests.e2e.host import (HostProcess, install_crds, kubectl, register_webhook,  # noqa: E402
                            service_account_kubeconfig, wait_for)

EXAMPLES = REPO / "deploy" / "examples"
VNODE = {"k8s.aliyun.com/vnode": "true"}
EVENT_SOURCE = "admission-host-eci-profile"
EXTRA_SELECTORS = [
    {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "batch-burst"},
     "spec": {"objectLabels": {"matchLabels": {"app": "batch"}}, "policy": {"normalNodePrefer": {}},
              "effect": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": -1000}}}},
    {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "db-stays-home"},
     "spec": {"objectLabels": {"matchLabels": {"app": "db"}}, "policy": {"normalNodeOnly": {}}}},
]
SELECTOR_NAMES = ("test-fair", "test-normal-node-prefer", "test-virtual-node-only", "batch-burst", "db-stays-home")
PODS = [("nginx-1", "nginx"), ("nginx-2", "nginx"), ("batch-1", "batch"), ("batch-2", "batch"),
        ("batch-3", "batch"), ("db-1", "db"), ("plain-1", "plain")]
# What each policy means for a pod that found no room on normal nodes.
WHEN_PENDING = {
    "normalNodeOnly": "its Selector keeps it off virtual nodes, so it waits for a normal node",
    "normalNodePrefer": "its Selector will let it burst to a virtual node",
    None: "no Selector matched it, so it never goes to a virtual node",
}


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


def resolve_winners(admin: KubeClient, pods) -> Dict[str, object]:
    """The Selector that wins each pod (or None), decided as the host decides, from the cluster's objects."""
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
    try:
        profile = eci.profile_of(host)
        return {name: profile.resolve(admin.get(f"/api/v1/namespaces/default/pods/{name}"), "default").selector
                for name in pods}
    finally:
        host.stop()


def host_events(admin: KubeClient) -> List[dict]:
    return [e for e in admin.get("/api/v1/namespaces/default/events")["items"]
            if (e.get("source") or {}).get("component") == EVENT_SOURCE]


def settled(admin: KubeClient, names) -> Optional[tuple]:
    """A snapshot of the sample pods and the host's Events once every pod is bound or the
    scheduler has said why not; None before."""
    pods = [admin.get(f"/api/v1/namespaces/default/pods/{name}") for name in names]
    for p in pods:
        conditions = (p.get("status") or {}).get("conditions") or ()
        if not p["spec"].get("nodeName") and not any(
                c.get("type") == "PodScheduled" and c.get("status") == "False" for c in conditions):
            return None
    return (tuple(p["metadata"]["resourceVersion"] for p in pods), len(host_events(admin)))


def wait_until_quiet(admin: KubeClient, names, quiet: float = 3.0, timeout: float = 90.0) -> None:
    """Until nothing changes for ``quiet`` seconds: a pod that bursts is Unschedulable first, then
    tolerated, then bound, and its Event is posted just after."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = settled(admin, names)
        if now is None or now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.3)
    raise TimeoutError(f"the sample pods did not settle within {timeout:.0f}s")


def story(name: str, stored: dict, selector, node_labels: Dict[str, dict], events: List[dict]) -> str:
    """One sentence on what happened to a pod, from the cluster."""
    node = stored["spec"].get("nodeName")
    won = f"Selector {selector.name} ({selector.policy}, priority {selector.priority})" if selector else "no Selector"
    if not node:
        waiting = next((c.get("message") for c in stored["status"].get("conditions") or ()
                        if c.get("type") == "PodScheduled"), "") or "no node fits"
        waiting = waiting.split(". ")[0].rstrip(".")  # the scheduler's first sentence: why no node fits
        why = WHEN_PENDING.get(selector.policy if selector else None, "it waits for the scheduler")
        return f"{name} is Pending ({waiting}): " + (f"{won}; {why}." if selector else f"{why}.")
    if all(node_labels.get(node, {}).get(k) == v for k, v in VNODE.items()):
        reasons = [e["reason"] for e in events if e["involvedObject"].get("uid") == stored["metadata"]["uid"]]
        how = ("no normal node had room, so the host added the virtual-node tolerations (Event BurstToVirtualNode)"
               if "BurstToVirtualNode" in reasons else "the host let it onto virtual nodes at creation")
        return f"{name} went to virtual node {node}: {won} won; {how}."
    return f"{name} runs on normal node {node}; {won}."


def report(cp, admin: KubeClient, sent: Dict[str, dict]) -> str:
    """Print what happened; return the pod ``explain`` was shown for."""
    names = [name for name, _ in PODS]
    winners = resolve_winners(admin, names)
    node_labels = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in admin.get("/api/v1/nodes")["items"]}
    events = host_events(admin)
    stored = {name: admin.get(f"/api/v1/namespaces/default/pods/{name}") for name in names}
    rows = [("POD", "APP", "SELECTOR", "NODE", "ADDED BY THE HOST")]
    for name, app in PODS:
        sel = winners[name]
        rows.append((name, app, sel.name if sel else "-", stored[name]["spec"].get("nodeName") or "(pending)",
                     added(sent[name], stored[name])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print()
    for name in names:
        print(story(name, stored[name], winners[name], node_labels, events))
    print(flush=True)
    step("kubectl get selectors (virtual pods against the cap, pods waiting to burst)")
    print(kubectl(cp, "get", "selectors").stdout, flush=True)
    burst = next((name for name in names if any(e["reason"] == "BurstToVirtualNode" and
                                                e["involvedObject"].get("name") == name for e in events)), "batch-3")
    step(f"admission-host explain default/{burst} --kubeconfig {cp.admin_kubeconfig}")
    # The installed command a user types (pip put it beside this interpreter).
    command = shutil.which("admission-host", path=str(Path(sys.executable).parent)) or "admission-host"
    print(subprocess.run([command, "explain", f"default/{burst}", "--kubeconfig", str(cp.admin_kubeconfig)],
                         check=True, capture_output=True, text=True, timeout=60).stdout, flush=True)
    step(f"kubectl get events --field-selector source={EVENT_SOURCE} (what the host did, told on the pods)")
    print(kubectl(cp, "get", "events", "--field-selector", f"source={EVENT_SOURCE}",
                  "-o", "custom-columns=POD:.involvedObject.name,REASON:.reason,MESSAGE:.message").stdout, flush=True)
    return burst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true",
                        help="run every step, print what happened, then stop the cluster and exit")
    args = parser.parse_args(argv)
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
        for body in EXTRA_SELECTORS:
            kubectl(cp, "apply", "-f", "-", input=yaml.safe_dump(body))
        for name in SELECTOR_NAMES:
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
        wait_until_quiet(admin, [name for name, _ in PODS])
        explained = report(cp, admin, sent)
        if args.once:
            step("done: stopping the host and the cluster")
            return 0
        print(f"The cluster keeps running. In another shell:\n  export KUBECONFIG={cp.admin_kubeconfig}")
        print("  kubectl get pods -o wide; kubectl get selectors")
        print(f"  admission-host explain default/{explained} --kubeconfig {cp.admin_kubeconfig}")
        print(f"Host log: {host.log_path}\nPress Ctrl-C to stop everything.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    except Exception:
        if host is not None:
            print(f"--- the host's log ({host.log_path}), last lines:\n{host.log_tail()}", file=sys.stderr)
        raise
    finally:
        if host is not None:
            host.stop()
        cp.stop()
        if args.once:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
