"""What the webhook adds to a pod CREATE, as a user feels it: through a real API server.

    python -m bench.apiserver                      # ~2 minutes: 10 Selectors, 3 rounds of 200 pods each way
    python -m bench.apiserver --pods 100 --rounds 2 --workers 2

The test cluster of the e2e suite (``tests/e2e/cluster.py``: etcd, kube-apiserver and the rest,
built by ``hack/cluster/build.sh``), the host as the suite runs it (a subprocess with deploy/'s
RBAC and its ServiceAccount's token, HTTPS), and ``--selectors`` Selectors of which one matches
every pod (policy ``fair``: each pod is patched). One client creates pods one after the other
and times each ``POST``; rounds alternate between the webhook registered and not (the
MutatingWebhookConfiguration deleted), so that drift on the machine hits both alike. The figure
is the difference: what the webhook adds at p50 and p99.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from framework import ApiError, KubeClient  # noqa: E402
from tests.e2e import cluster  # noqa: E402
from tests.e2e.host import (HostProcess, install_crds, kubectl, register_webhook,  # noqa: E402
                            service_account_kubeconfig, wait_for)

NAMESPACE = "bench-apiserver"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def selectors(count: int) -> List[dict]:
    """``count`` Selectors on distinct app labels; the pods carry the first one's."""
    return [{"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"bench-{i}"},
             "spec": {"objectLabels": {"matchLabels": {"app": f"bench-{i}"}}, "policy": {"fair": {}},
                      "priority": i, "effect": {"annotations": {"bench": "yes"}}}} for i in range(count)]


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench-0"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def patched(admin: KubeClient, name: str) -> bool:
    return any(t.get("key") == "k8s.aliyun.com/vnode" for t in admin.get(
        f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")["spec"].get("tolerations") or ())


def create_pods(admin: KubeClient, prefix: str, count: int) -> List[float]:
    """Create ``count`` pods one after the other; each POST's latency in milliseconds."""
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    out = []
    for i in range(count):
        started = time.perf_counter()
        admin.post(path, pod(f"{prefix}-{i}"))
        out.append((time.perf_counter() - started) * 1000)
    return out


def set_webhook(admin: KubeClient, host: HostProcess, cp, on: bool, round_no: int) -> None:
    """Register or delete the webhook, then wait until the API server acts on it (probe pods)."""
    if on:
        register_webhook(admin, f"{host.url}/mutate", cp.certs.ca_pem)
    else:
        try:
            admin.delete(f"{WEBHOOKS}/admission-host")
        except ApiError as exc:
            if exc.status != 404:
                raise
    probes = iter(range(10_000))

    def applied():
        name = f"probe-{round_no}-{'on' if on else 'off'}-{next(probes)}"
        admin.post(f"/api/v1/namespaces/{NAMESPACE}/pods", pod(name))
        return patched(admin, name) == on

    wait_for(applied, 30, 0.2, f"the webhook {'registered' if on else 'removed'}")


def mean_of(text: str, name: str, label: str) -> float:
    """sum / count of a histogram's series that carry ``label`` (all of them added)."""
    total = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in total:
            if line.startswith(f"{name}_{part}{{") and label in line:
                total[part] += float(line.rsplit(" ", 1)[1])
    return total["sum"] / total["count"] if total["count"] else float("nan")


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def cluster_with_host(prefix: str, namespace: str, selector_objects: List[dict], extra_args: List[str] = ()):
    """The e2e suite's cluster and the host as the suite runs it, with ``namespace`` and the
    Selectors made and cached: ``(control plane, admin client, host)``; all stopped after."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    cp = cluster.ControlPlane(work / "control-plane")
    cp.start()
    host = None
    try:
        admin = KubeClient.from_kubeconfig(str(cp.admin_kubeconfig))
        install_crds(cp, admin)
        kubeconfig = service_account_kubeconfig(cp, admin, work / "sa-kubeconfig")
        admin.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for sel in selector_objects:
            admin.post("/apis/eci.aliyun.com/v1/selectors", sel)
        cert, key = cp.certs.serving_cert("webhook", ips=["127.0.0.1"])
        host = HostProcess(work / "host", kubeconfig, cert, key, cp.certs.ca_path, extra_args=list(extra_args)).start()
        wait_for(lambda: f'admission_host_cache_objects{{watch="eci-selectors"}} {len(selector_objects)}.0'
                 in host.get("/metrics")[1], 30, what="the Selectors cached")
        yield cp, admin, host
    finally:
        if host is not None:
            host.stop()
        cp.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apiserver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=200, help="pods per round and way (200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating with and without (3)")
    parser.add_argument("--selectors", type=int, default=10, help="Selectors in the cluster (10)")
    parser.add_argument("--workers", type=int, default=1, help="the host's --workers (1)")
    args = parser.parse_args(argv)

    with cluster_with_host("bench-apiserver-", NAMESPACE, selectors(args.selectors),
                           ["--workers", str(args.workers)]) as (cp, admin, host):
        latencies: Dict[str, List[float]] = {"without": [], "with": []}
        for r in range(args.rounds):
            for way in (("without", "with") if r % 2 == 0 else ("with", "without")):
                set_webhook(admin, host, cp, way == "with", r)
                create_pods(admin, f"warm-{r}-{way}", 20)
                latencies[way] += create_pods(admin, f"r{r}-{way}", args.pods)
                print(f"round {r + 1} {way:>7} the webhook: p50 {percentile(latencies[way][-args.pods:], 0.5):.2f} ms",
                      flush=True)
        print(f"\nKubernetes {cp.release.minor}, {args.selectors} Selectors, host --workers {args.workers}, "
              f"{args.rounds} x {args.pods} pods each way, one client")
        print("| pod CREATE | p50 ms | p90 ms | p99 ms | mean ms |")
        print("|---|---:|---:|---:|---:|")
        for way in ("without", "with"):
            v = latencies[way]
            print(f"| {way} the webhook | {percentile(v, 0.5):.2f} | {percentile(v, 0.9):.2f} | "
                  f"{percentile(v, 0.99):.2f} | {statistics.mean(v):.2f} |")
        added = {q: percentile(latencies["with"], q) - percentile(latencies["without"], q) for q in (0.5, 0.99)}
        print(f"\nadded by the webhook: {added[0.5]:+.2f} ms p50, {added[0.99]:+.2f} ms p99 "
              f"(the Go original on this machine: +1.7 ms p50, +3.1 ms p99)")
        # Where the time goes: each webhook call as the API server times it, and the host's own part.
        server_side = mean_of(kubectl(cp, "get", "--raw", "/metrics").stdout,
                              "apiserver_admission_webhook_admission_duration_seconds",
                              'name="admission-host.eci.aliyun.com"')
        host_side = mean_of(host.get("/metrics")[1], "admission_host_admission_duration_seconds",
                            'resource="pods"')
        print(f"a webhook call as the API server times it: mean {server_side * 1000:.2f} ms; "
              f"the host's own handling of a pod CREATE: mean {host_side * 1000:.2f} ms")
        return 0


if __name__ == "__main__":
    sys.exit(main())
