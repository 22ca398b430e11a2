"""What an exact cap adds to a binding to a virtual node, through a real API server.

    python -m bench.cap_binding                    # ~1 minute: 3 rounds of 100 bindings each way
    python -m bench.cap_binding --bindings 200 --rounds 4

The test cluster of the e2e suite (``tests/e2e/cluster.py``), the host as the suite runs it, a
virtual node, and two ``fair`` Selectors alike but for ``maxVirtualPods`` (one capped far above
what is bound, one not). Pods are created for no scheduler (``schedulerName`` nobody serves), then
one client binds them to the virtual node one after the other and times each ``POST
pods/NAME/binding``; rounds alternate between the Selectors. The difference is what the cap's
record (a GET and a conditional PUT of a ConfigMap, plugins/eci_profile/cap.py) adds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.apiserver import cluster_with_host, percentile  # noqa: E402
from framework import KubeClient  # noqa: E402
from tests.e2e import cluster  # noqa: E402
from tests.e2e.host import register_webhook, wait_for  # noqa: E402

NAMESPACE = "bench-cap"
NODE = "virtual-bench"
VNODE = {"k8s.aliyun.com/vnode": "true"}


def selector(name: str, cap=None) -> dict:
    spec = {"objectLabels": {"matchLabels": {"app": name}}, "policy": {"fair": {}}}
    if cap is not None:
        spec["maxVirtualPods"] = cap
    return {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name}, "spec": spec}


def pod(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"schedulerName": "nobody", "containers": [{"name": "app", "image": "nginx:1.27", "resources": {
                "requests": {"cpu": "1m", "memory": "1Mi"}}}]}}


def bind_all(admin: KubeClient, names: List[str]) -> List[float]:
    """Bind each pod to the virtual node, one after the other; each POST's latency in milliseconds."""
    out = []
    for name in names:
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}}
        started = time.perf_counter()
        admin.post(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/binding", body)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cap_binding", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bindings", type=int, default=100, help="bindings per round and way (100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating capped and not (3)")
    args = parser.parse_args(argv)

    with cluster_with_host("bench-cap-", NAMESPACE, [selector("capped", cap=1_000_000),
                                                      selector("uncapped")]) as (cp, admin, host):
        from kubernetes import client

        cluster.create_node(client.CoreV1Api(cp.api_client()), NODE, labels=VNODE,
                            cpu="1000", memory="1000Gi", pods="5000",
                            taints=[{"key": "k8s.aliyun.com/vnode", "value": "true", "effect": "NoSchedule"}])
        register_webhook(admin, f"{host.url}/mutate", cp.certs.ca_pem)
        latencies: Dict[str, List[float]] = {"uncapped": [], "capped": []}
        for r in range(args.rounds):
            for way in (("uncapped", "capped") if r % 2 == 0 else ("capped", "uncapped")):
                names = [f"{way}-{r}-{i}" for i in range(args.bindings + 10)]
                for name in names:
                    admin.post(f"/api/v1/namespaces/{NAMESPACE}/pods", pod(name, way))
                # The host's pending pods' cache has them all (else a binding waits for a GET).
                cached = f'admission_host_cache_objects{{watch="eci-pending-pods"}} {len(names)}.0'
                wait_for(lambda: cached in host.get("/metrics")[1], 30, what="the pending pods cached")
                bind_all(admin, names[:10])  # warm-up
                latencies[way] += bind_all(admin, names[10:])
                print(f"round {r + 1} {way:>8}: p50 {percentile(latencies[way][-args.bindings:], 0.5):.2f} ms",
                      flush=True)
        record = admin.get("/api/v1/namespaces/admission-host/configmaps/eci-cap-capped")
        print(f"\nKubernetes {cp.release.minor}, {args.rounds} x {args.bindings} bindings to a virtual node each way, "
              f"one client; the record holds {len(json.loads(record['data']['pods']))} pods at the end")
        print("| binding | p50 ms | p90 ms | p99 ms | mean ms |")
        print("|---|---:|---:|---:|---:|")
        for way in ("uncapped", "capped"):
            v = latencies[way]
            print(f"| {way} Selector | {percentile(v, 0.5):.2f} | {percentile(v, 0.9):.2f} | "
                  f"{percentile(v, 0.99):.2f} | {statistics.mean(v):.2f} |")
        added = {q: percentile(latencies["capped"], q) - percentile(latencies["uncapped"], q) for q in (0.5, 0.99)}
        print(f"\nadded by the exact cap: {added[0.5]:+.2f} ms p50, {added[0.99]:+.2f} ms p99")
        return 0


if __name__ == "__main__":
    sys.exit(main())
