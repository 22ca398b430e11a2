"""A scale rehearsal: the host in a cluster of 5,000 nodes, 50,000 running pods and 1,000 Selectors.

    python -m bench.scale                                          # the full size (~12 minutes on 2 cores)
    python -m bench.scale --nodes 1000 --pods 10000 --selectors 1000 --burst 2000
    python -m bench.scale --nodes 20 --pods 100 --selectors 10 --burst 50      # a smoke test, ~35 s

The test cluster of the e2e suite (``tests/e2e/cluster.py``: etcd, kube-apiserver, controller
manager, scheduler, KWOK's simulated nodes), the controller manager and the scheduler at
``--kube-api-qps`` ``--qps`` (1000). The world is made first, without the webhook:

- ``--nodes`` KWOK nodes, ``max(2, nodes // 500)`` of them virtual (labelled and tainted as the
  suite's), the rest normal. KWOK renews the node leases every ``--lease-seconds`` / 4 (the
  suite's 40 s lease would be 500 lease writes a second at 5,000 nodes) and the node lifecycle
  controller waits that long before it calls a node unreachable;
- ``--pods`` running pods, created with ``spec.nodeName`` set to a normal node (no scheduler:
  the cheapest way to a running pod) in ``--pods // 500`` namespaces, each labelled for one of the
  Selectors (``app.kubernetes.io/name: app-i``);
- ``--selectors`` Selectors: ``--selectors - 1`` of the five shapes of ``bench/world.py`` and the
  burst's own, normalNodePrefer, priority 10.

Every normal node is full for a 1-CPU pod (its CPU is what its running pods request plus 500m),
but for the burst's room: ``--burst // 2`` pods, 4 on each of the first nodes. Then:

1. ``admission-host serve`` as a process (deploy/'s RBAC, its ServiceAccount's token), timed from
   its start to ``/readyz`` 200 (every watch listed and synced); its RSS, and every component's;
2. deploy/'s webhook configuration registered, until the host sees a probe pod's admission;
3. the burst: a Deployment of ``--burst`` replicas of 1 CPU matched by the normalNodePrefer
   Selector. Timed until every pod is scheduled and until every pod is Running (a watch on them);
   the API server's ``apiserver_admission_webhook_admission_duration_seconds`` for the webhook
   over the burst (its p50/p99 from the histogram's buckets) beside the host's own
   (``admission_host_admission_duration_seconds``); the host's API calls
   (``admission_host_api_requests_total``) per second;
4. ``kubectl eci selectors`` at that size: its time and peak RSS.

The figures print as markdown and go to ``bench/out/scale.json`` (``--out``). Each phase prints its progress;
when a size does not fit (a phase times out, a process dies), what was reached is still reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import world  # noqa: E402
from bench.spike import HOST_CONFIG, cpu_seconds, delta, histogram, quantile, raw_metrics, samples, watch_pods  # noqa: E402
from framework import METADATA_ONLY, ApiError, KubeClient, list_pages  # noqa: E402
from tests.e2e import cluster  # noqa: E402
from tests.e2e.host import (HostProcess, install_crds, register_webhook, service_account_kubeconfig,  # noqa: E402
                            wait_for)

BURST_APP = "scale-burst"
BURST_NAMESPACE = "scale-burst"
VNODE = {"k8s.aliyun.com/vnode": "true"}
VNODE_TAINT = {"key": "k8s.aliyun.com/vnode", "value": "true", "effect": "NoSchedule"}
WEBHOOK = "admission-host.eci.aliyun.com"
SELECTORS = "/apis/eci.aliyun.com/v1/selectors"
BACKGROUND_CPU_M = 100  # each background pod's CPU request, millicores
ROOM_PER_NODE = 4  # burst pods a "room" node takes


class Cluster(cluster.ControlPlane):
    """The suite's control plane with KWOK's node leases stretched to ``lease_seconds`` and a pod
    network for 50,000 pods."""

    def __init__(self, workdir: Path, lease_seconds: int, **kwargs):
        super().__init__(workdir, **kwargs)
        self.lease_seconds = lease_seconds

    def _start_kwok(self, timeout: float) -> None:
        self._kwok.start([
            str(self.bin_dir / "kwok"),
            "--kubeconfig=%s" % self.admin_kubeconfig,
            "--config=%s" % cluster.KWOK_STAGES,
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=%s=fake" % cluster.KWOK_ANNOTATION,
            "--server-address=127.0.0.1:%d" % self.kwok_port,
            "--node-lease-duration-seconds=%d" % self.lease_seconds,
            # Its default pod network is a /24: 254 addresses for tens of thousands of pods.
            "--cidr=10.0.0.0/8",
        ])
        self._wait_https(self._kwok, "http://127.0.0.1:%d/healthz" % self.kwok_port, timeout)

    def pids(self) -> Dict[str, int]:
        procs = {"etcd": self._etcd, "kube-apiserver": self._apiserver, "kube-controller-manager":
                 self._controller_manager, "kube-scheduler": self._scheduler, "kwok": self._kwok}
        return {name: p.popen.pid for name, p in procs.items() if p.running}


# -- what the processes hold ----------------------------------------------------------------------------------


def memory(pid: int) -> Dict[str, float]:
    """VmRSS and VmHWM of a process, MiB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line[:5]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def children(pid: int) -> List[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def processes(cp: Cluster, host: Optional[HostProcess]) -> Dict[str, int]:
    pids = cp.pids()
    if host is not None and host.proc is not None and host.proc.poll() is None:
        pids["admission-host"] = host.proc.pid
        for i, child in enumerate(children(host.proc.pid)):  # serving workers, when configured
            pids[f"admission-host worker {i + 1}"] = child
    return pids


def memory_table(cp: Cluster, host: Optional[HostProcess]) -> Dict[str, Dict[str, float]]:
    return {name: memory(pid) for name, pid in processes(cp, host).items()}


# -- making many objects ----------------------------------------------------------------------------------------


class Maker:
    """POSTs from a pool of threads, each with its own client (and so its own connections)."""

    def __init__(self, kubeconfig: Path, threads: int):
        self.kubeconfig, self.threads = kubeconfig, threads
        self.local = threading.local()
        self.errors: Dict[str, int] = {}
        self.lock = threading.Lock()

    def client(self) -> KubeClient:
        kube = getattr(self.local, "kube", None)
        if kube is None:
            kube = self.local.kube = KubeClient.from_kubeconfig(str(self.kubeconfig))
            kube.user_agent = "bench-scale"
        return kube

    def _post(self, item) -> None:
        path, body = item
        for attempt in range(8):
            try:
                self.client().post(path, body, timeout=60)
                return
            except ApiError as exc:
                if exc.status == 409:  # made by an earlier attempt whose answer was lost
                    return
                if exc.status not in (0, 429, 500, 503, 504) or attempt == 7:
                    with self.lock:
                        key = f"{exc.status}: {str(exc)[:120]}"
                        self.errors[key] = self.errors.get(key, 0) + 1
                    return
                time.sleep(0.2 * (attempt + 1))

    def make(self, what: str, items: Iterable, total: int, deadline: float) -> dict:
        """POST every ``(path, body)``; the rate, printed as it goes."""
        started = time.monotonic()
        done = 0
        step = max(1, total // 10)
        with ThreadPoolExecutor(self.threads) as pool:
            for _ in pool.map(self._post, items, chunksize=16):
                done += 1
                if done % step == 0 or done == total:
                    took = time.monotonic() - started
                    print(f"  {what}: {done:,}/{total:,} in {took:.0f} s ({done / took:.0f}/s)", flush=True)
                if time.monotonic() > deadline:
                    pool.shutdown(wait=False, cancel_futures=True)
                    break
        took = time.monotonic() - started
        return {"what": what, "made": done, "of": total, "seconds": round(took, 1),
                "per_second": round(done / took, 1) if took else None}


def count(kube: KubeClient, path: str, **query) -> int:
    """How many objects a LIST returns, by pages of metadata only."""
    return sum(1 for _ in list_pages(kube, path, 5000, accept=METADATA_ONLY, timeout=120.0, **query))


def wait_until(what: str, check: Callable[[], int], want: int, deadline: float, interval: float = 3.0) -> dict:
    """Poll ``check`` (a count) until it reaches ``want``; how long it took, and where it stood."""
    started, last, printed = time.monotonic(), -1, 0.0
    while True:
        try:
            last = check()
        except ApiError as exc:
            print(f"  {what}: {exc}", flush=True)
        now = time.monotonic()
        if last >= want or now > deadline:
            return {"what": what, "reached": last, "of": want, "seconds": round(now - started, 1),
                    "done": last >= want}
        if now - printed > 30:
            print(f"  {what}: {last:,}/{want:,} after {now - started:.0f} s", flush=True)
            printed = now
        time.sleep(interval)


# -- the world ----------------------------------------------------------------------------------------------------


class World:
    def __init__(self, args):
        self.args = args
        self.virtual = max(2, args.nodes // 500)
        self.normal = max(1, args.nodes - self.virtual)
        self.namespaces = max(1, args.pods // 500)
        room = args.burst // 2
        self.room_nodes = min(self.normal, math.ceil(room / ROOM_PER_NODE))
        # Background pods round-robin over the normal nodes: node k holds per_node[k].
        self.per_node = [args.pods // self.normal + (1 if k < args.pods % self.normal else 0)
                         for k in range(self.normal)]

    def node_bodies(self) -> Iterable[tuple]:
        for k in range(self.normal):
            cpu = self.per_node[k] * BACKGROUND_CPU_M + 500 + (ROOM_PER_NODE * 1000 if k < self.room_nodes else 0)
            yield "/api/v1/nodes", node(f"normal-{k}", f"{cpu}m", self.per_node[k] + 20)
        per_virtual = math.ceil(self.args.burst / self.virtual) * 2 + 10
        for v in range(self.virtual):
            yield "/api/v1/nodes", node(f"virtual-{v}", str(per_virtual), per_virtual, VNODE, [VNODE_TAINT])

    def namespace_bodies(self) -> Iterable[tuple]:
        for j in range(self.namespaces):
            yield "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": f"scale-{j}", "labels": {"team": f"team-{j % 50}", "env": "prod" if j % 3 else "dev"}}}
        yield "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": BURST_NAMESPACE}}

    def selector_bodies(self) -> Iterable[tuple]:
        for i in range(self.args.selectors - 1):
            sel = world.selector(i)
            sel["metadata"] = {"name": sel["metadata"]["name"]}
            yield SELECTORS, sel
        yield SELECTORS, {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": BURST_APP},
                          "spec": {"objectLabels": {"matchLabels": {"app": BURST_APP}}, "priority": 10,
                                   "policy": {"normalNodePrefer": {}},
                                   "effect": {"annotations": {"scale": "burst"}, "labels": {"scale-effect": "virtual"}}}}

    def pod_bodies(self) -> Iterable[tuple]:
        selectors = max(1, self.args.selectors - 1)
        for i in range(self.args.pods):
            namespace = f"scale-{i % self.namespaces}"
            yield f"/api/v1/namespaces/{namespace}/pods", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"bg-{i}", "labels": {world.NAME_LABEL: f"app-{i % selectors}"}},
                "spec": {"nodeName": f"normal-{i % self.normal}", "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "app", "image": "nginx:1.27", "resources": {
                             "requests": {"cpu": f"{BACKGROUND_CPU_M}m", "memory": "16Mi"}}}]}}


def node(name: str, cpu: str, pods: int, labels: Optional[dict] = None, taints: Optional[list] = None) -> dict:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              **(labels or {})}
    annotations = {cluster.KWOK_ANNOTATION: "fake", cluster.CAPACITY_ANNOTATION: f"cpu={cpu},memory=4000Gi,pods={pods}"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"taints": taints} if taints else {}}


def ready_nodes(kube: KubeClient) -> int:
    ready = 0
    for n in list_pages(kube, "/api/v1/nodes", 1000):
        conditions = (n.get("status") or {}).get("conditions") or ()
        taints = (n.get("spec") or {}).get("taints") or ()
        tainted = any(t.get("key", "").startswith("node.kubernetes.io/") for t in taints)
        ready += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions) and not tainted
    return ready


# -- the burst as a watch sees it ---------------------------------------------------------------------------------


class BurstWatch:
    """When each pod of the burst was first seen scheduled, and first seen Running."""

    def __init__(self, kube: KubeClient):
        self.kube = kube
        self.scheduled: Dict[str, float] = {}
        self.running: Dict[str, float] = {}
        self.node: Dict[str, str] = {}
        self.stopping = threading.Event()
        self.listed = threading.Event()

    def start(self) -> "BurstWatch":
        threading.Thread(target=self._run, name="burst-watch", daemon=True).start()
        return self

    def see(self, pod: dict, now: float) -> None:
        uid = pod["metadata"]["uid"]
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            self.scheduled.setdefault(uid, now)
            self.node[uid] = node
        if (pod.get("status") or {}).get("phase") == "Running":
            self.running.setdefault(uid, now)

    def _run(self) -> None:
        watch_pods(self.kube, f"/api/v1/namespaces/{BURST_NAMESPACE}/pods", f"app={BURST_APP}", self.see,
                   self.stopping, self.listed)


# -- the rehearsal ------------------------------------------------------------------------------------------------


class Rehearsal:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        qps = [f"--kube-api-qps={args.qps}", f"--kube-api-burst={args.qps * 2}"] if args.qps else []
        self.cp = Cluster(self.work / "control-plane", args.lease_seconds, component_flags={
            "kube-scheduler": qps,
            "kube-controller-manager": qps + [f"--node-monitor-grace-period={args.lease_seconds}s"]})
        self.world = World(args)
        self.result: dict = {"sizes": {"nodes": args.nodes, "virtual_nodes": self.world.virtual,
                                       "pods": args.pods, "namespaces": self.world.namespaces,
                                       "selectors": args.selectors, "burst": args.burst,
                                       "burst_room_on_normal_nodes": min(args.burst // 2,
                                                                         self.world.room_nodes * ROOM_PER_NODE)},
                             "phases": [], "limits": []}
        self.host: Optional[HostProcess] = None
        self.admin: Optional[KubeClient] = None

    def deadline(self, seconds: float) -> float:
        return time.monotonic() + seconds

    def phase(self, entry: dict) -> dict:
        self.result["phases"].append(entry)
        if not entry.get("done", entry.get("made") == entry.get("of")):
            self.result["limits"].append(f"{entry['what']}: {entry.get('reached', entry.get('made')):,} of "
                                         f"{entry['of']:,} in {entry['seconds']} s")
        return entry

    def run(self) -> dict:
        a, w = self.args, self.world
        started = time.monotonic()
        self.cp.start()
        self.admin = KubeClient.from_kubeconfig(str(self.cp.admin_kubeconfig))
        install_crds(self.cp, self.admin)
        self.kubeconfig = service_account_kubeconfig(self.cp, self.admin, self.work / "sa-kubeconfig")
        maker = Maker(self.cp.admin_kubeconfig, a.threads)
        print(f"control plane up, {time.monotonic() - started:.0f} s; the world: {a.nodes:,} nodes ({w.virtual} "
              f"virtual), {a.pods:,} pods in {w.namespaces} namespaces, {a.selectors:,} Selectors", flush=True)

        self.phase(maker.make("nodes", w.node_bodies(), w.normal + w.virtual, self.deadline(a.phase_timeout)))
        self.phase(wait_until("nodes Ready", lambda: ready_nodes(self.admin), w.normal + w.virtual,
                              self.deadline(a.phase_timeout), 5.0))
        self.phase(maker.make("namespaces", w.namespace_bodies(), w.namespaces + 1, self.deadline(a.phase_timeout)))
        self.phase(maker.make("Selectors", w.selector_bodies(), a.selectors, self.deadline(a.phase_timeout)))
        self.phase(maker.make("pods", w.pod_bodies(), a.pods, self.deadline(a.phase_timeout)))
        self.phase(wait_until("pods Running", lambda: a.pods - count(self.admin, "/api/v1/pods",
                                                                     fieldSelector="status.phase!=Running"),
                              a.pods, self.deadline(a.phase_timeout), 5.0))
        if maker.errors:
            self.result["create_errors"] = maker.errors
        self.result["world_seconds"] = round(time.monotonic() - started, 1)
        self.result["memory_world"] = memory_table(self.cp, None)
        self.result["etcd_db_mb"] = etcd_db_mb(self.cp)
        print(f"the world made in {self.result['world_seconds']:.0f} s", flush=True)

        self.start_host()
        self.burst()
        self.result["memory_after_burst"] = memory_table(self.cp, self.host)
        self.result["kubectl_eci_selectors"] = self.kubectl_eci()
        self.result["total_seconds"] = round(time.monotonic() - started, 1)
        return self.result

    def start_host(self) -> None:
        cert, key = self.cp.certs.serving_cert("webhook", ips=["127.0.0.1"])
        self.host = HostProcess(self.work / "host", self.kubeconfig, cert, key, self.cp.certs.ca_path,
                                config_text=HOST_CONFIG)
        cpu_api = cpu_seconds(self.cp.pids()["kube-apiserver"])
        started = time.monotonic()
        self.host.start(wait=False)
        pid = self.host.proc.pid
        self.host.wait_ready(self.args.phase_timeout)
        ready = time.monotonic() - started
        self.result["host_ready_s"] = round(ready, 2)
        self.result["host_ready_cpu_s"] = round(cpu_seconds(pid), 2)
        api_cpu = cpu_seconds(self.cp.pids()["kube-apiserver"]) - cpu_api
        self.result["apiserver_cpu_during_host_start_s"] = round(api_cpu, 2)
        metrics = self.host.get("/metrics")[1]
        self.result["host_cache_objects"] = {dict(k)["watch"]: int(v) for k, v in
                                             samples(metrics, "admission_host_cache_objects").items()}
        self.result["memory_host_ready"] = memory_table(self.cp, self.host)
        print(f"host ready in {ready:.1f} s, RSS {self.result['memory_host_ready']['admission-host']}", flush=True)
        wait_for(lambda: "admission_host_leader 1.0" in self.host.get("/metrics")[1], 120, 0.5, "the host leading")
        register_webhook(self.admin, f"{self.host.url}/mutate", self.cp.certs.ca_pem)
        probes = iter(range(10_000))

        def in_use():  # the API server calls the webhook: the host counts a probe pod's admission
            name = f"probe-{next(probes)}"
            self.admin.post(f"/api/v1/namespaces/{BURST_NAMESPACE}/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "probe"}},
                "spec": {"schedulerName": "nobody", "containers": [{"name": "app", "image": "nginx:1.27"}]}})
            self.admin.delete(f"/api/v1/namespaces/{BURST_NAMESPACE}/pods/{name}", gracePeriodSeconds=0)
            return admissions(self.host) > 0

        wait_for(in_use, 60, 0.5, "the webhook in use")

    def burst(self) -> None:
        a = self.args
        watch = BurstWatch(self.admin).start()
        watch.listed.wait(30)
        api_pid, host_pid = self.cp.pids()["kube-apiserver"], self.host.proc.pid
        before_api, before_host = raw_metrics(self.admin), self.host.get("/metrics")[1]
        cpu = {"kube-apiserver": cpu_seconds(api_pid), "admission-host": cpu_seconds(host_pid),
               "kube-scheduler": cpu_seconds(self.cp.pids()["kube-scheduler"]), "kwok": cpu_seconds(self.cp.pids()["kwok"])}
        started = time.monotonic()
        spec = {"terminationGracePeriodSeconds": 0,
                "containers": [{"name": "app", "image": "nginx:1.27",
                                "resources": {"requests": {"cpu": "1", "memory": "16Mi"}}}]}
        self.admin.post(f"/apis/apps/v1/namespaces/{BURST_NAMESPACE}/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": BURST_APP},
            "spec": {"replicas": a.burst, "selector": {"matchLabels": {"app": BURST_APP}},
                     "template": {"metadata": {"labels": {"app": BURST_APP}}, "spec": spec}}})
        deadline, scheduled_at, running_at, printed = started + a.burst_timeout, None, None, started
        while time.monotonic() < deadline:
            now = time.monotonic()
            if scheduled_at is None and len(watch.scheduled) >= a.burst:
                scheduled_at = now
            if len(watch.running) >= a.burst:
                running_at = now
                break
            if now - printed > 30:
                print(f"  burst: {len(watch.scheduled):,} scheduled, {len(watch.running):,} Running after "
                      f"{now - started:.0f} s", flush=True)
                printed = now
            time.sleep(0.1)
        ended = time.monotonic()
        window = ended - started
        after_api, after_host = raw_metrics(self.admin), self.host.get("/metrics")[1]
        watch.stopping.set()
        metric = "apiserver_admission_webhook_admission_duration_seconds"
        buckets = {le: v - histogram(before_api, metric, name=WEBHOOK).get(le, 0.0)
                   for le, v in histogram(after_api, metric, name=WEBHOOK).items()}
        calls = delta(samples(after_host, "admission_host_api_requests_total"),
                      samples(before_host, "admission_host_api_requests_total"))
        by_call: Dict[tuple, float] = {}
        for key, value in calls.items():
            call = (dict(key).get("verb", ""), dict(key).get("resource", ""))
            by_call[call] = by_call.get(call, 0) + value
        virtual = {f"virtual-{v}" for v in range(self.world.virtual)}
        admitted = delta(samples(after_host, "admission_host_admissions_total"),
                         samples(before_host, "admission_host_admissions_total"))
        api = delta(samples(after_api, "apiserver_request_total"), samples(before_api, "apiserver_request_total"))
        own = {}
        for resource in ("pods", "pods/binding"):
            metric = "admission_host_admission_duration_seconds"
            before = histogram(before_host, metric, resource=resource)
            own[resource] = {le: v - before.get(le, 0.0) for le, v in histogram(after_host, metric,
                                                                                 resource=resource).items()}
        self.result["burst"] = {
            "scheduled": len(watch.scheduled), "running": len(watch.running),
            "all_scheduled_s": None if scheduled_at is None else round(scheduled_at - started, 1),
            "all_running_s": None if running_at is None else round(running_at - started, 1),
            "on_virtual_nodes": sum(1 for n in watch.node.values() if n in virtual),
            "webhook_calls": int(buckets.get(float("inf"), 0)),
            "webhook_p50_ms": ms(quantile(buckets, 0.50)), "webhook_p99_ms": ms(quantile(buckets, 0.99)),
            "webhook_p999_ms": ms(quantile(buckets, 0.999)),
            "webhook_buckets": {str(le): int(v) for le, v in sorted(buckets.items())},
            "host_own_p99_ms": {r: ms(quantile(b, 0.99)) for r, b in own.items()},
            "window_s": round(window, 1),
            "host_api_calls_per_s": {f"{v} {r}": round(n / window, 2)
                                     for (v, r), n in sorted(by_call.items(), key=lambda kv: -kv[1])},
            "host_api_calls": int(sum(by_call.values())),
            "host_admissions": int(sum(admitted.values())),
            "cpu_s": {k: round(cpu_seconds(pid) - cpu[k], 1) for k, pid in
                      (("kube-apiserver", api_pid), ("admission-host", host_pid),
                       ("kube-scheduler", self.cp.pids()["kube-scheduler"]), ("kwok", self.cp.pids()["kwok"]))},
            "http_429": int(sum(v for k, v in api.items() if ("code", "429") in k)),
        }
        if running_at is None:
            self.result["limits"].append(f"the burst: {len(watch.running):,} of {a.burst:,} Running after "
                                         f"{a.burst_timeout} s")
        b = self.result["burst"]
        print(f"burst: all scheduled {b['all_scheduled_s']} s, all Running {b['all_running_s']} s, "
              f"{b['on_virtual_nodes']} on virtual nodes; webhook p99 {b['webhook_p99_ms']} ms", flush=True)

    def kubectl_eci(self) -> dict:
        """``kubectl eci selectors`` as kubectl runs the plugin: its own process, the admin's kubeconfig."""
        env = dict(os.environ, KUBECONFIG=str(self.cp.admin_kubeconfig))
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", KUBECTL_ECI, "selectors"], cwd=str(REPO), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        timer = threading.Timer(self.args.phase_timeout, proc.kill)
        timer.start()
        out, err = proc.communicate()
        timer.cancel()
        took = time.monotonic() - started
        err_lines = err.decode().splitlines()
        peak = next((int(line.split()[1]) / 1024 for line in reversed(err_lines) if line.startswith("maxrss ")), None)
        rows = out.decode().splitlines()[1:]
        counted = sum(int(r.split()[3]) for r in rows if len(r.split()) > 3 and r.split()[3].isdigit())
        result = {"seconds": round(took, 1), "exit": proc.returncode, "selectors": len(rows),
                  "pods_counted": counted, "peak_rss_mb": peak and round(peak)}
        if proc.returncode:
            result["stderr"] = "\n".join(err_lines[-10:])[-1000:]
        print(f"kubectl eci selectors: {took:.1f} s, {len(rows)} Selectors, {counted:,} pods counted", flush=True)
        return result

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()
        self.cp.stop()


# The plugin's entry point, reporting its peak RSS (KiB) on stderr as it exits.
KUBECTL_ECI = """\
import atexit, resource, runpy, sys
atexit.register(lambda: sys.stderr.write("maxrss %d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
sys.argv = ["kubectl-eci", *sys.argv[1:]]
runpy.run_module("plugins.eci_profile.kubectl", run_name="__main__")
"""


def admissions(host: HostProcess) -> int:
    return int(sum(samples(host.get("/metrics")[1], "admission_host_admissions_total").values()))


def ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000, 1)


def etcd_db_mb(cp: Cluster) -> Optional[float]:
    try:
        text = raw_url(cp.etcd_url + "/metrics")
    except OSError:
        return None
    size = samples("\n".join(line.replace(" ", "{} ", 1) if "{" not in line else line
                             for line in text.splitlines()), "etcd_mvcc_db_total_size_in_bytes")
    return round(sum(size.values()) / 2 ** 20, 1) if size else None


def raw_url(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


# -- the report ----------------------------------------------------------------------------------------------------


def report(r: dict) -> str:
    s = r["sizes"]
    lines = [f"{s['nodes']:,} KWOK nodes ({s['virtual_nodes']} virtual), {s['pods']:,} running pods in "
             f"{s['namespaces']} namespaces, {s['selectors']:,} Selectors, a burst of {s['burst']:,} with room for "
             f"{s['burst_room_on_normal_nodes']:,} on normal nodes", "",
             "| phase | reached | seconds | per second |", "|---|---:|---:|---:|"]
    for p in r["phases"]:
        reached = p.get("made", p.get("reached"))
        rate = p.get("per_second") or ""
        lines.append(f"| {p['what']} | {reached:,} / {p['of']:,} | {p['seconds']} | {rate} |")
    if "host_ready_s" in r:
        lines += ["", f"host ready (process start to /readyz 200, every cache synced): **{r['host_ready_s']} s** "
                      f"({r['host_ready_cpu_s']} CPU s; the API server {r['apiserver_cpu_during_host_start_s']} CPU s); "
                      f"cached: {', '.join(f'{k} {v:,}' for k, v in sorted(r['host_cache_objects'].items()))}"]
    lines += ["", "| process | RSS MiB, world made | RSS MiB, host ready | RSS MiB after the burst | peak (VmHWM) MiB |",
              "|---|---:|---:|---:|---:|"]
    names = list(dict.fromkeys([*r.get("memory_world", {}), *r.get("memory_host_ready", {}),
                                *r.get("memory_after_burst", {})]))
    for name in names:
        cells = [r.get(k, {}).get(name, {}).get("VmRSS") for k in ("memory_world", "memory_host_ready",
                                                                      "memory_after_burst")]
        peak = max((r.get(k, {}).get(name, {}).get("VmHWM") or 0) for k in ("memory_world", "memory_host_ready",
                                                                              "memory_after_burst"))
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:,.0f}" for c in cells) + f" | {peak:,.0f} |")
    if r.get("etcd_db_mb") is not None:
        lines.append(f"\netcd's database: {r['etcd_db_mb']:,} MiB")
    b = r.get("burst")
    if b:
        lines += ["", f"burst of {s['burst']:,}: all scheduled **{b['all_scheduled_s']} s**, all Running "
                      f"**{b['all_running_s']} s** ({b['running']:,} Running, {b['on_virtual_nodes']:,} on virtual "
                      f"nodes); webhook calls {b['webhook_calls']:,}, p50 {b['webhook_p50_ms']} ms, "
                      f"**p99 {b['webhook_p99_ms']} ms**, p99.9 {b['webhook_p999_ms']} ms (the API server's "
                      f"histogram; buckets {b['webhook_buckets']}); the host's own p99 (its "
                      f"admission_host_admission_duration_seconds): "
                      + ", ".join(f"{k} {v} ms" for k, v in b["host_own_p99_ms"].items())
                      + f"; HTTP 429s {b['http_429']}; CPU s over the burst: "
                      + ", ".join(f"{k} {v}" for k, v in b["cpu_s"].items()),
                  "", f"the leader's API calls over the {b['window_s']} s burst ({b['host_api_calls']:,}):", "",
                  "| verb resource | calls/s |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in b["host_api_calls_per_s"].items()]
    k = r.get("kubectl_eci_selectors")
    if k:
        lines += ["", f"`kubectl eci selectors`: {k['seconds']} s, {k['selectors']:,} Selectors, "
                      f"{k['pods_counted']:,} pods counted, peak RSS {k['peak_rss_mb']} MiB, exit {k['exit']}"]
    if r["limits"]:
        lines += ["", "not reached: " + "; ".join(r["limits"])]
    return "\n".join(lines)


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5000, help="KWOK nodes, virtual ones included (5000)")
    parser.add_argument("--pods", type=int, default=50_000, help="running pods before the burst (50000)")
    parser.add_argument("--selectors", type=int, default=1000, help="Selectors, the burst's included (1000)")
    parser.add_argument("--burst", type=int, default=5000, help="replicas of the burst's Deployment (5000)")
    parser.add_argument("--threads", type=int, default=16, help="concurrent clients creating the world (16)")
    parser.add_argument("--qps", type=int, default=1000,
                        help="--kube-api-qps of the controller manager and the scheduler (1000; 0: their default)")
    parser.add_argument("--lease-seconds", type=int, default=1200,
                        help="KWOK's node lease duration; the node lifecycle controller's grace period (1200)")
    parser.add_argument("--phase-timeout", type=float, default=1800, help="seconds for each phase of the world (1800)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "scale.json",
                        help="where the figures go as JSON (bench/out/scale.json)")
    parser.add_argument("--hold", type=float, default=0,
                        help="seconds to keep the cluster up after the figures, its KUBECONFIG printed (0)")
    parser.add_argument("--burst-timeout", type=float, default=1200, help="seconds for the burst to run (1200)")
    args = parser.parse_args(argv)
    if args.selectors < 1 or args.burst < 1 or args.nodes < 3:
        parser.error("at least 3 nodes, 1 Selector and a burst of 1")

    # SIGTERM stops the cluster and the host as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, interrupt)
    rehearsal = Rehearsal(args)
    failure = None
    try:
        rehearsal.run()
    except KeyboardInterrupt:
        rehearsal.stop()
        raise
    except Exception as exc:  # what was reached is still worth reporting
        failure = f"{type(exc).__name__}: {exc}"
        rehearsal.result["limits"].append(failure[:1000])
        rehearsal.result.setdefault("memory_at_failure", memory_table(rehearsal.cp, rehearsal.host))
        if rehearsal.host is not None:
            rehearsal.host.stop()
    try:
        text = report(rehearsal.result)
        print("\n" + text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rehearsal.result, indent=1))
        print(f"\n({args.out}; logs in {rehearsal.work})", flush=True)
        if args.hold and failure is None:
            print(f"the cluster stays up {args.hold:.0f} s: export KUBECONFIG={rehearsal.cp.admin_kubeconfig}",
                  flush=True)
            time.sleep(args.hold)
    except KeyboardInterrupt:
        pass
    finally:
        rehearsal.stop()
    return 0 if failure is None and not rehearsal.result["limits"] else 1


if __name__ == "__main__":
    sys.exit(main())
