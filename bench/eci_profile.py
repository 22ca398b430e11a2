"""ECI-Profile's own cost: plugin time per request as Selectors grow, and the caches' memory.

    python -m bench.eci_profile                 # plugin time at 10 / 1,000 / 10,000 Selectors
    python -m bench.eci_profile --memory        # RSS of the caches: 10k namespaces, 5k nodes, 20k pods

Plugin time is the mutator alone (``EciProfile.mutate_pod`` / ``mutate_binding`` on a prepared
request), median and p99 over many runs, in one process. Selectors are realistic: each selects
an ``app`` label, a fifth of them also a namespace label, a tenth use matchExpressions.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time

from framework.admission.review import AdmissionRequest
from framework.testing import PluginHarness, binding, namespace, node, pod, review
from framework.kube.frozen import freeze
from plugins.eci_profile import plugin as eci


# Two preferred zones, a tainted spot pool, virtual nodes: the tiers a pod is fenced and ordered by.
TIERS = [{"name": "on-demand", "nodeLabels": {"topology.kubernetes.io/zone": "z1"}},
         {"name": "reserved", "nodeLabels": {"topology.kubernetes.io/zone": "z2"}},
         {"name": "spot", "nodeLabels": {"topology.kubernetes.io/zone": "z0"}, "maxPods": 20,
          "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]},
         {"name": "virtual", "virtualNodes": True}]


def selectors(n: int, rng: random.Random) -> list:
    out = []
    policies = ["fair", "normalNodeOnly", "normalNodePrefer", "virtualNodeOnly"]
    for i in range(n):
        spec = {"policy": {policies[i % 4]: {}}, "priority": rng.randint(0, 5),
                "objectLabels": {"matchLabels": {"app": f"app-{i}"}},
                "effect": {"annotations": {"k8s.aliyun.com/eci-with-eip": "true",
                                           "controller.kubernetes.io/pod-deletion-cost": -1000},
                           "labels": {"burst": "yes"}}}
        if i % 5 == 0:
            spec["namespaceLabels"] = {"matchLabels": {"team": f"team-{i % 50}"}}
        if i % 10 == 3:
            spec["objectLabels"] = {"matchExpressions": [{"key": "app", "operator": "In", "values": [f"app-{i}"]},
                                                         {"key": "tier", "operator": "NotIn", "values": ["db"]}]}
        if i % 8 == 1:  # half the normalNodeOnly ones: four tiers instead
            del spec["policy"]
            spec["tiers"] = TIERS
        out.append({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"sel-{i:05d}"},
                    "spec": spec})
    return out


def world(n_namespaces: int, n_nodes: int, rng: random.Random) -> list:
    objs = [namespace(f"ns-{i}", {"team": f"team-{i % 50}", "env": rng.choice(["prod", "dev"])})
            for i in range(n_namespaces)]
    objs += [node(f"node-{i}", {"k8s.aliyun.com/vnode": "true"} if i % 10 == 0 else
                  {"kubernetes.io/hostname": f"node-{i}", "topology.kubernetes.io/zone": f"z{i % 3}"})
             for i in range(n_nodes)]
    return objs


def sample_pod(i: int, app: str) -> dict:
    p = pod(f"web-{i}", namespace=f"ns-{i % 1000}", labels={
        "app": app, "pod-template-hash": "5d8f7c9b6d", "tier": "web", "version": "v1.2.3"})
    p["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "2026-11-27T10:00:00Z"}
    return p


def measure(fn, requests, repeat: int):
    """Median and p99 (µs) of ``fn(req)``; each run gets a fresh copy of the object, made untimed."""
    from framework.admission.patch import clone

    times = []
    for _ in range(repeat):
        for req in requests:
            req.object = clone(req.raw["object"])
            start = time.perf_counter_ns()
            fn(req)
            times.append(time.perf_counter_ns() - start)
    times.sort()
    return statistics.median(times) / 1000, times[int(len(times) * 0.99)] / 1000


def run_time(n_selectors: int, n_namespaces: int, repeat: int) -> dict:
    rng = random.Random(42)
    harness = PluginHarness(("eci_profile", eci), objects=world(n_namespaces, 100, rng) + selectors(n_selectors, rng))
    profile = eci.profile_of(harness.host)
    # Matching pods hit virtualNodeOnly Selectors (i % 4 == 3): the policy that does the most work.
    hit = [sample_pod(i, f"app-{rng.randrange(n_selectors // 4) * 4 + 3}") for i in range(200)]
    miss = [sample_pod(i, f"other-{i}") for i in range(200)]
    pending = [sample_pod(i, f"app-{rng.randrange(n_selectors)}") for i in range(200)]
    pod_reqs = lambda pods: [AdmissionRequest(review(p)["request"]) for p in pods]  # noqa: E731
    bind_reqs = [AdmissionRequest(review(binding(p["metadata"]["name"], "node-0", p["metadata"]["namespace"]),
                                         dry_run=True)["request"]) for p in pending]
    # Pods of Selectors with tiers (i % 8 == 1), and their bindings to a node of the first tier.
    tiered = [sample_pod(i + 1000, f"app-{rng.randrange(n_selectors // 8) * 8 + 1}") for i in range(200)]
    harness.host.store("eci-pending-pods").replace([
        {"metadata": {"name": p["metadata"]["name"], "namespace": p["metadata"]["namespace"], "uid": "u",
                      "resourceVersion": "1", "labels": p["metadata"]["labels"]},
         "annotationKeys": [], "tolerations": [], "unschedulable": False} for p in pending + tiered])
    tier_bind_reqs = [AdmissionRequest(review(binding(p["metadata"]["name"], "node-1", p["metadata"]["namespace"]),
                                              dry_run=True)["request"]) for p in tiered]
    out = {"non-matching pod": measure(profile.mutate_pod, pod_reqs(miss), repeat),
           "matching pod": measure(profile.mutate_pod, pod_reqs(hit), repeat),
           "binding to virtual node": measure(profile.mutate_binding, bind_reqs, repeat),
           "pod with tiers": measure(profile.mutate_pod, pod_reqs(tiered), repeat),
           "binding into a tier": measure(profile.mutate_binding, tier_bind_reqs, repeat)}
    assert hit and pod_reqs(hit)  # sanity: the matching set is not empty
    harness.close()
    return out


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_memory(n_namespaces: int, n_nodes: int, n_pods: int, n_selectors: int) -> None:
    """Feed full-size objects through the watches' transforms, as the reflector does."""
    rng = random.Random(7)
    gc.collect()
    before = rss_mb()
    harness = PluginHarness(("eci_profile", eci))
    host = harness.host
    profile = eci.profile_of(host)
    watches = {w.name: w for w in profile.watches()}

    def fill(name, objs):  # each result frozen as it comes, as the reflector does
        w = watches[name]
        host.store(name).replace([freeze(w.transform(o)) for o in objs])

    big_meta = {"managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                                   "fieldsV1": {"f:metadata": {"f:labels": {f"f:l{i}": {} for i in range(10)}}}}]}
    fill("eci-namespaces", ({**namespace(f"ns-{i}", {"team": f"t{i % 50}", "env": "prod"}),
                             "metadata": {"name": f"ns-{i}", "labels": {"team": f"t{i % 50}"}, **big_meta}}
                            for i in range(n_namespaces)))
    fill("eci-nodes", ({"metadata": {"name": f"node-{i}", "labels": {f"node.kubernetes.io/l{j}": "x" for j in range(12)},
                                     **big_meta},
                        "status": {"images": [{"names": [f"registry/image-{j}:v1"], "sizeBytes": 1} for j in range(30)],
                                   "conditions": [{"type": "Ready", "status": "True"}]}} for i in range(n_nodes)))
    def full_pods():  # one at a time, as the reflector decodes a page: the full objects never pile up
        for i in range(n_pods):
            p = sample_pod(i, f"app-{i % 1000}")
            p["metadata"].update(uid=f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", resourceVersion=str(i), **big_meta)
            p["spec"]["containers"] = [{"name": f"c{j}", "image": "nginx:1.25", "env": [
                {"name": f"E{k}", "value": "x" * 20} for k in range(10)]} for j in range(3)]
            p["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                               "reason": "Unschedulable"}]}
            yield p

    fill("eci-pending-pods", full_pods())
    fill("eci-selectors", selectors(n_selectors, rng))
    gc.collect()
    after = rss_mb()
    print(f"caches: {n_namespaces} namespaces, {n_nodes} nodes, {n_pods} pending pods, {n_selectors} Selectors")
    print(f"  RSS before {before:.0f} MB, after {after:.0f} MB, caches {after - before:.0f} MB")
    harness.close()


def run_drain_back_memory(n_pods: int, n_nodes: int) -> None:
    """What drain-back's running-pods watch keeps: full pods through its transform into NodeUsage."""
    from plugins.eci_profile.drain import NodeUsage

    gc.collect()
    before = rss_mb()
    usage = NodeUsage()

    def running():
        for i in range(n_pods):
            p = sample_pod(i, f"app-{i % 1000}")
            p["spec"]["nodeName"] = f"node-{i % n_nodes}"
            p["spec"]["containers"] = [{"name": f"c{j}", "image": "nginx:1.25", "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"}}} for j in range(2)]
            yield NodeUsage.transform(p)

    usage.replace(running())
    gc.collect()
    after = rss_mb()
    print(f"drain-back: {n_pods} running pods on {n_nodes} nodes: {after - before:.1f} MB "
          f"({(after - before) * 2**20 / n_pods:.0f} bytes a pod)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory", action="store_true", help="measure the caches' RSS instead")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--namespaces", type=int, default=10_000)
    args = parser.parse_args()
    if args.memory:
        run_memory(10_000, 5_000, 20_000, 1_000)
        run_drain_back_memory(100_000, 5_000)
        return
    print(f"plugin time per request (µs, median / p99), {args.namespaces} namespaces")
    columns = ("non-matching pod", "matching pod", "binding to virtual node", "pod with tiers", "binding into a tier")
    print(f"{'Selectors':>10} | " + " | ".join(f"{c:>23}" for c in columns))
    for n in (10, 1_000, 10_000):
        r = run_time(n, args.namespaces, args.repeat)
        print(f"{n:>10} | " + " | ".join(f"{r[c][0]:10.1f} / {r[c][1]:10.1f}" for c in columns))


if __name__ == "__main__":
    main()
