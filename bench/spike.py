"""A burst as the cluster feels it: a 1,000-replica Deployment with room for 40 pods on normal nodes.

    python -m bench.spike                  # ~4 minutes: one spike without the webhook, one with a
                                           # constant-answer webhook, one with the host
    python -m bench.spike --runs 2 --pods 500
    python -m bench.spike --qps 0          # the controller manager and scheduler at their own rate limits

The test cluster of the e2e suite (``tests/e2e/cluster.py``: etcd, kube-apiserver, controller
manager, scheduler, KWOK's simulated nodes), the controller manager and the scheduler at
``--kube-api-qps 500`` unless told (at their defaults the ReplicaSet controller creates ~20 pods a
second, a pace that hides most else): 10 normal nodes with room for 40 pods of 1 CPU in all, 5 virtual nodes, one
normalNodePrefer Selector with an effect (an annotation and a label). Each spike is a Deployment
of ``--pods`` replicas (1 CPU each) in a namespace of its own, two ways:

- **without** the webhook: no host, no webhook configuration, the pods tolerate the virtual nodes
  from the start: the cluster's own limit;
- with a **constant-answer webhook** (the ceiling): the same serving stack (waitress, TLS, falcon)
  answering every pod CREATE with one precomputed patch, the toleration, and every binding with an
  unchanged answer (``bench.serve_variant --variant echo``): what two webhook calls per pod cost
  the cluster, whatever the webhook does (``--no-ceiling`` leaves it out);
- **with** the host: ``admission-host serve`` as a process (the suite's way: deploy/'s RBAC, its
  ServiceAccount's token, HTTPS), deploy/'s webhook configuration registered, started afresh for
  the spike; pods burst as the Selector says (Unschedulable, the burst controller's toleration,
  the binding's effect, the label PATCH after it).

A run is one spike each way (the order rotates from run to run); each spike starts once the last
one's namespace is gone and the control plane idles. Figures: the time until every
pod is Running (and, with the host, every pod on a virtual node labelled); HTTP 429 on the
scheduler's bindings and 409 on pod PATCHes (the API server's ``apiserver_request_total``), and
what its priority and fairness rejected; CPU seconds of the webhook and of the API server over the
spike (``/proc/PID/stat``); the webhook's peak RSS and the TLS connections the API server opened to
it (the webhook's ``admission_host_tls_handshakes_total``); the host's API calls by verb and
resource (its ``admission_host_api_requests_total``); and, from a watch on the pods, when each
virtual pod was first seen Running and first seen with its labels.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.apiserver import percentile  # noqa: E402
from framework import ApiError, KubeClient  # noqa: E402
from tests.e2e import cluster  # noqa: E402
from tests.e2e.host import HOST_CONFIG as SUITE_HOST_CONFIG  # noqa: E402
from tests.e2e.host import (HostProcess, install_crds, register_webhook, service_account_kubeconfig,  # noqa: E402
                            wait_for)

APP = "spike"
WEBHOOK_SECONDS = "apiserver_admission_webhook_admission_duration_seconds"
WAYS = {"without": "without the webhook", "ceiling": "constant-answer webhook", "with": "with the host"}
VNODE = {"k8s.aliyun.com/vnode": "true"}
TOLERATION = {"key": "k8s.aliyun.com/vnode", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
EFFECT_LABEL = "spike-effect"
SELECTOR_LABEL = "eci.aliyun.com/selector"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
TICKS = os.sysconf("SC_CLK_TCK")
# The suite's host configuration with the label sweep at its deployed interval: the host as deployed.
HOST_CONFIG = SUITE_HOST_CONFIG.replace("    labelSweepInterval: 2s\n", "")


def selectors() -> List[dict]:
    burst = {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "spike"},
             "spec": {"objectLabels": {"matchLabels": {"app": APP}}, "policy": {"normalNodePrefer": {}},
                      "effect": {"annotations": {"spike": "burst"}, "labels": {EFFECT_LABEL: "virtual"}}}}
    # Pods of no spike that show when the webhook is in use (fair: a toleration at creation).
    probe = {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "spike-probe"},
             "spec": {"objectLabels": {"matchLabels": {"app": "spike-probe"}}, "policy": {"fair": {}}}}
    return [burst, probe]


def deployment(replicas: int, tolerated: bool) -> dict:
    spec = {"terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": "nginx:1.27",
                            "resources": {"requests": {"cpu": "1", "memory": "16Mi"}}}]}
    if tolerated:
        spec["tolerations"] = [TOLERATION]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": APP}},
                     "template": {"metadata": {"labels": {"app": APP}}, "spec": spec}}}


# -- what the processes used -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


SAMPLE = re.compile(r"^(\w+)(?:\{([^}]*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def samples(text: str, name: str) -> Dict[tuple, float]:
    """``{((label, value), ...): value}`` of one metric in Prometheus text."""
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and m.group(1) == name:
            out[tuple(sorted(LABEL.findall(m.group(2) or "")))] = float(m.group(3))
    return out


def delta(after: Dict[tuple, float], before: Dict[tuple, float]) -> Dict[tuple, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def requests_total(counts: Dict[tuple, float], **labels) -> int:
    return int(sum(v for k, v in counts.items() if all((name, value) in k for name, value in labels.items())))


def handshakes(port: int, ca_path) -> float:
    """TLS connections the webhook on ``port`` has set up (its ``admission_host_tls_handshakes_total``;
    this call's own connection counted): the API server keeps 25 idle and opens one per call
    beyond them."""
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(ca_path))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=context, timeout=5) as resp:
        text = resp.read().decode()
    return samples(text, "admission_host_tls_handshakes_total").get((), 0.0)


def histogram(text: str, metric: str, **labels) -> Dict[float, float]:
    """``{le: cumulative count}`` of a histogram, summed over the series that carry ``labels``."""
    out: Dict[float, float] = {}
    for key, value in samples(text, metric + "_bucket").items():
        d = dict(key)
        if all(d.get(k) == v for k, v in labels.items()):
            le = float("inf") if d["le"] == "+Inf" else float(d["le"])
            out[le] = out.get(le, 0.0) + value
    return out


def quantile(buckets: Dict[float, float], q: float) -> Optional[float]:
    """The quantile of a cumulative histogram, interpolated inside its bucket (as Prometheus does)."""
    bounds = sorted(buckets)
    if not bounds or not buckets[bounds[-1]]:
        return None
    rank, lower, below = q * buckets[bounds[-1]], 0.0, 0.0
    for le in bounds:
        if buckets[le] >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / (buckets[le] - below) if buckets[le] > below else 1.0)
        lower, below = le, buckets[le]
    return lower


def raw_metrics(kube: KubeClient) -> str:
    resp = kube.pool.request("GET", kube.url("/metrics"), headers=kube._headers(None), timeout=30.0)
    return resp.data.decode()


# -- the pods as a watch sees them -------------------------------------------------------------------------


def watch_pods(kube: KubeClient, path: str, selector: str, see: Callable[[dict, float], None],
               stopping: threading.Event, listed: threading.Event, restarted: Callable[[], None] = lambda: None) -> None:
    """List then watch the pods at ``path`` with ``selector`` until ``stopping``, passing each as seen
    and when to ``see``; listed again after an error (``restarted`` told)."""
    version = ""
    while not stopping.is_set():
        try:
            if not version:
                listing = kube.get(path, labelSelector=selector)
                now = time.monotonic()
                for pod in listing.get("items") or ():
                    see(pod, now)
                version = listing["metadata"]["resourceVersion"]
                listed.set()
            for event in kube.stream(path, {"watch": "true", "labelSelector": selector, "resourceVersion": version,
                                            "allowWatchBookmarks": "true", "timeoutSeconds": 10}, timeout=30):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    version = ""
                    break
                version = obj["metadata"]["resourceVersion"]
                if event.get("type") in ("ADDED", "MODIFIED"):
                    see(obj, time.monotonic())
        except ApiError:
            version = ""
            restarted()
            time.sleep(0.2)


@dataclass
class Seen:
    first: float
    node: str = ""
    unschedulable: Optional[float] = None  # PodScheduled=False first seen
    tolerated: Optional[float] = None  # the virtual-node toleration first seen
    bound: Optional[float] = None
    running: Optional[float] = None
    labelled: Optional[float] = None


@dataclass
class PodWatch:
    """Every pod of the spike, and when its Running phase and its labels were first seen."""

    kube: KubeClient
    namespace: str
    pods: Dict[str, Seen] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    listed: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0

    def start(self) -> "PodWatch":
        threading.Thread(target=self._run, name="spike-watch", daemon=True).start()
        return self

    def see(self, pod: dict, now: float) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        seen = self.pods.get(meta["uid"])
        if seen is None:
            seen = self.pods[meta["uid"]] = Seen(now)
        seen.node = spec.get("nodeName") or seen.node
        if seen.bound is None and seen.node:
            seen.bound = now
        if seen.tolerated is None and TOLERATION in (spec.get("tolerations") or ()):
            seen.tolerated = now
        if seen.unschedulable is None and any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                                              for c in (pod.get("status") or {}).get("conditions") or ()):
            seen.unschedulable = now
        if seen.running is None and (pod.get("status") or {}).get("phase") == "Running":
            seen.running = now
        labels = meta.get("labels") or {}
        if seen.labelled is None and EFFECT_LABEL in labels and SELECTOR_LABEL in labels:
            seen.labelled = now

    def _run(self) -> None:
        def restarted():
            self.restarts += 1

        watch_pods(self.kube, f"/api/v1/namespaces/{self.namespace}/pods", f"app={APP}", self.see, self.stopping,
                   self.listed, restarted)

    def running(self) -> int:
        return sum(1 for s in list(self.pods.values()) if s.running is not None)

    def virtual(self, nodes) -> List[Seen]:
        return [s for s in list(self.pods.values()) if s.node in nodes]


# -- one spike ------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path, pods: int, qps: int):
        self.work, self.pods = work, pods
        flags = [f"--kube-api-qps={qps}"] if qps else []
        self.cp = cluster.ControlPlane(work / "control-plane", component_flags={
            "kube-scheduler": flags, "kube-controller-manager": flags})
        self.admin: Optional[KubeClient] = None
        self.virtual_nodes = [f"virtual-{i}" for i in range(5)]
        self.spikes = 0

    def start(self) -> None:
        from kubernetes import client

        self.cp.start()
        self.admin = KubeClient.from_kubeconfig(str(self.cp.admin_kubeconfig))
        install_crds(self.cp, self.admin)
        self.kubeconfig = service_account_kubeconfig(self.cp, self.admin, self.work / "sa-kubeconfig")
        for sel in selectors():
            self.admin.post("/apis/eci.aliyun.com/v1/selectors", sel)
        core = client.CoreV1Api(self.cp.api_client())
        for i in range(10):  # 4 pods of 1 CPU each: 40 in all
            cluster.create_node(core, f"normal-{i}", cpu="4", memory="64Gi", pods="110")
        for name in self.virtual_nodes:
            cluster.create_node(core, name, labels=VNODE, cpu="1000", memory="4000Gi", pods="1000",
                                taints=[{"key": "k8s.aliyun.com/vnode", "value": "true", "effect": "NoSchedule"}])

    def stop(self) -> None:
        self.cp.stop()

    def start_host(self, namespace: str) -> HostProcess:
        cert, key = self.cp.certs.serving_cert("webhook", ips=["127.0.0.1"])
        host = HostProcess(self.work / f"host-{self.spikes}", self.kubeconfig, cert, key, self.cp.certs.ca_path,
                           config_text=HOST_CONFIG).start()
        wait_for(lambda: re.search(r'^admission_host_cache_objects\{watch="eci-selectors"\} 2\.0$',
                                   host.get("/metrics")[1], re.M), 30, what="the Selectors cached")
        wait_for(lambda: re.search(r"^admission_host_leader 1\.0$", host.get("/metrics")[1], re.M), 60,
                 what="the host leading (its burst controller running)")
        register_webhook(self.admin, f"{host.url}/mutate", self.cp.certs.ca_pem)
        self.wait_in_use(namespace)
        return host

    def start_ceiling(self, namespace: str):
        """The fastest webhook the stack can be that still tolerates a burst's pods at creation:
        ``bench.serve_variant --variant echo`` (a precomputed answer per call, the uid put in)."""
        import subprocess

        cert, key = self.cp.certs.serving_cert("webhook", ips=["127.0.0.1"])
        port = cluster.free_port()
        proc = subprocess.Popen([sys.executable, "-m", "bench.serve_variant", "--variant", "echo", "--port", str(port),
                                 "--tls-cert-file", str(cert), "--tls-private-key-file", str(key)], cwd=REPO,
                                stderr=open(self.work / f"ceiling-{self.spikes}.log", "wb"))
        register_webhook(self.admin, f"https://127.0.0.1:{port}/mutate", self.cp.certs.ca_pem)
        self.wait_in_use(namespace)
        return proc, port

    def wait_in_use(self, namespace: str) -> None:
        probes = iter(range(1000))

        def in_use():  # the API server calls the webhook: a probe pod comes back tolerated
            name = f"probe-{next(probes)}"
            pod = self.admin.post(f"/api/v1/namespaces/{namespace}/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "spike-probe"}},
                "spec": {"schedulerName": "nobody", "containers": [{"name": "app", "image": "nginx:1.27"}]}})
            self.admin.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", gracePeriodSeconds=0)
            return TOLERATION in (pod["spec"].get("tolerations") or ())

        wait_for(in_use, 30, 0.2, "the webhook in use")

    def spike(self, way: str) -> dict:
        """One Deployment of ``pods`` replicas, from its creation until every pod is Running (and,
        with the host, every virtual pod labelled); the figures of that window."""
        self.spikes += 1
        namespace = f"spike-{self.spikes}"
        self.admin.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": namespace}})
        host = self.start_host(namespace) if way == "with" else None
        ceiling, ceiling_port = self.start_ceiling(namespace) if way == "ceiling" else (None, 0)
        api_pid = self.cp._apiserver.popen.pid
        try:
            watch = PodWatch(self.admin, namespace).start()
            watch.listed.wait(30)
            components = {p.name: p.popen.pid for p in (self.cp._etcd, self.cp._scheduler,
                                                         self.cp._controller_manager, self.cp._kwok)
                          if p.running}
            self.quiet([api_pid, *components.values()])
            before_text = raw_metrics(self.admin)
            before_api = samples(before_text, "apiserver_request_total")
            before_host = host.get("/metrics")[1] if host else ""
            cpu_api = cpu_seconds(api_pid)
            cpu_components = {name: cpu_seconds(pid) for name, pid in components.items()}
            cpu_host = cpu_seconds(host.proc.pid) if host else cpu_seconds(ceiling.pid) if ceiling else 0.0
            webhook_port = host.port if host else ceiling_port
            handshakes_before = handshakes(webhook_port, self.cp.certs.ca_path) if webhook_port else 0.0
            started = time.monotonic()
            self.admin.post(f"/apis/apps/v1/namespaces/{namespace}/deployments",
                            deployment(self.pods, tolerated=way == "without"))
            running_at = labelled_at = None
            deadline = started + 600
            while time.monotonic() < deadline:
                now = time.monotonic()
                if running_at is None and watch.running() >= self.pods:
                    running_at = now
                if running_at is not None:
                    virtual = watch.virtual(self.virtual_nodes)
                    if host is None or all(s.labelled is not None for s in virtual):
                        labelled_at = now if host is not None else None
                        break
                    if now > running_at + 60:
                        break  # some labels never came: reported as such
                time.sleep(0.05)
            ended = time.monotonic()
            result = {
                "way": way, "pods": self.pods,
                "running_s": None if running_at is None else running_at - started,
                "labelled_s": None if labelled_at is None else labelled_at - started,
                "running": watch.running(),
                "api_cpu_s": cpu_seconds(api_pid) - cpu_api,
                "component_cpu_s": {name: round(cpu_seconds(pid) - cpu_components[name], 1)
                                    for name, pid in components.items()},
                "window_s": ended - started,
            }
            after_text = raw_metrics(self.admin)
            api = delta(samples(after_text, "apiserver_request_total"), before_api)
            before = histogram(before_text, WEBHOOK_SECONDS, type="admit")
            calls = {le: n - before.get(le, 0.0) for le, n in histogram(after_text, WEBHOOK_SECONDS, type="admit").items()}
            if calls and max(calls.values()):
                result["webhook_latency"] = [quantile(calls, 0.5), quantile(calls, 0.99), max(calls.values())]
            result["binding_429"] = requests_total(api, code="429", resource="pods", subresource="binding")
            # Who the API server's priority and fairness turned away, and why (queue-full, time-out, ...).
            rejected = delta(samples(after_text, "apiserver_flowcontrol_rejected_requests_total"),
                             samples(before_text, "apiserver_flowcontrol_rejected_requests_total"))
            result["apf_rejected"] = {"/".join(dict(k).get(n, "") for n in ("priority_level", "flow_schema", "reason")):
                                      int(v) for k, v in rejected.items()}
            result["pod_patch_409"] = requests_total(api, code="409", resource="pods", subresource="", verb="PATCH")
            result["pod_patch_422"] = requests_total(api, code="422", resource="pods", subresource="", verb="PATCH")
            result["pod_patch"] = requests_total(api, resource="pods", subresource="", verb="PATCH")
            if webhook_port:  # each count includes its own call's connection
                result["webhook_connections"] = int(handshakes(webhook_port, self.cp.certs.ca_path)
                                                    - handshakes_before - 1)
            if ceiling is not None:
                result["webhook_cpu_s"] = cpu_seconds(ceiling.pid) - cpu_host
                result["webhook_peak_rss_mb"] = peak_rss_mb(ceiling.pid)
            if host is not None:
                result["webhook_cpu_s"] = cpu_seconds(host.proc.pid) - cpu_host
                result["webhook_peak_rss_mb"] = peak_rss_mb(host.proc.pid)
                after_host = host.get("/metrics")[1]

                def counted(name):
                    return delta(samples(after_host, name), samples(before_host, name))

                calls = counted("admission_host_api_requests_total")
                result["host_calls"] = sorted(({**dict(k), "count": int(v)} for k, v in calls.items()),
                                              key=lambda c: (-c["count"], c["verb"], c["resource"]))
                # Which of the pod PATCHes were the burst controller's and which the labels'.
                result["burst_actions"] = {dict(k)["outcome"]: int(v) for k, v in
                                           counted("eci_profile_burst_actions_total").items()}
                result["label_outcomes"] = {dict(k)["outcome"]: int(v) for k, v in
                                            counted("eci_profile_binding_labels_total").items()}
            virtual = watch.virtual(self.virtual_nodes)
            result["virtual_pods"] = len(virtual)
            result["stages"] = stage_timing(virtual)
            if host is not None:
                result.update(label_timing(virtual))
            watch.stopping.set()
            return result
        finally:
            if host is not None or ceiling is not None:
                self.admin.delete(f"{WEBHOOKS}/admission-host")
            if host is not None:
                host.stop()
            if ceiling is not None:
                ceiling.terminate()
                ceiling.wait(10)
            self.clean(namespace)

    def clean(self, namespace: str) -> None:
        """Every pod of the spike gone before the next one (their places are the next one's)."""
        apps, pods = f"/apis/apps/v1/namespaces/{namespace}", f"/api/v1/namespaces/{namespace}/pods"
        try:
            self.admin.delete(f"{apps}/deployments/{APP}")
        except ApiError as exc:
            if exc.status != 404:
                raise
        self.admin.delete(f"{apps}/replicasets")

        def gone():  # the garbage collector may still be on its way: delete what is left, look again
            self.admin.delete(pods, gracePeriodSeconds=0)
            return not self.admin.get(pods, limit=1)["items"] and not self.admin.get(f"{apps}/replicasets")["items"]

        wait_for(gone, 120, 1.0, f"the pods of {namespace} deleted")
        self.admin.delete(f"/api/v1/namespaces/{namespace}")
        wait_for(lambda: self.admin.get("/api/v1/namespaces", fieldSelector=f"metadata.name={namespace}")["items"] == [],
                 120, 0.5, f"namespace {namespace} deleted")

    def quiet(self, pids: List[int], idle: float = 0.15, longest: float = 30.0) -> None:
        """Until the control plane's processes use less than ``idle`` CPU seconds a second (or
        ``longest`` seconds): the clean-up after the last spike (the namespace controller's sweep,
        the components' own) would otherwise run into the next one, whichever way it is."""
        until = time.monotonic() + longest
        while time.monotonic() < until:
            before = sum(map(cpu_seconds, pids))
            time.sleep(1.0)
            if sum(map(cpu_seconds, pids)) - before < idle:
                return


STAGES = (("created", "first"), ("Unschedulable", "unschedulable"), ("tolerated", "tolerated"),
          ("bound", "bound"), ("Running", "running"))


def stage_timing(virtual: List[Seen]) -> Dict[str, List[float]]:
    """Where a virtual pod's time went: p50 / p99 seconds from each stage to the next it passed
    through (a pod tolerated at creation has no Unschedulable stage)."""
    gaps: Dict[str, List[float]] = {}
    for s in virtual:
        times = [(name, getattr(s, attr)) for name, attr in STAGES if getattr(s, attr) is not None]
        for (a, ta), (b, tb) in zip(times, times[1:]):
            gaps.setdefault(f"{a} → {b}", []).append(max(0.0, tb - ta))
    return {k: [len(v), percentile(v, 0.5), percentile(v, 0.99)] for k, v in gaps.items()}


def label_timing(virtual: List[Seen]) -> dict:
    """When each virtual pod's labels were first seen, against when it was first seen Running."""
    both = [s for s in virtual if s.running is not None and s.labelled is not None]
    lags = [max(0.0, s.labelled - s.running) for s in both]
    return {"labelled_before_running_pct": 100.0 * sum(1 for s in both if s.labelled <= s.running) / len(both)
            if both else float("nan"),
            "label_lag_p50_s": percentile(lags, 0.5) if lags else float("nan"),
            "label_lag_p99_s": percentile(lags, 0.99) if lags else float("nan"),
            "label_lag_max_s": max(lags) if lags else float("nan"),
            "never_labelled": sum(1 for s in virtual if s.labelled is None)}


# -- the report -------------------------------------------------------------------------------------------------


def fmt(value, spec=".1f") -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def report(results: List[dict], release: str, qps: int) -> str:
    pods = results[0]["pods"]
    lines = [f"Kubernetes {release}, {pods:,} pods of 1 CPU, room for 40 on 10 normal nodes, 5 virtual nodes, "
             f"controller manager and scheduler at {f'--kube-api-qps {qps}' if qps else 'their default rate limits'}; "
             f"load averages before the spikes: {', '.join(r['load_before'] for r in results)}", "",
             f"| spike | all {pods:,} Running s | virtual pods labelled s | HTTP 429 bindings | pod PATCHes: all / "
             f"HTTP 409 / 422 | webhook CPU s | API server CPU s | webhook peak RSS MB | pods on virtual "
             f"nodes | labelled before Running | label lag p50 / p99 / max s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['run']}: {WAYS[r['way']]} | {fmt(r['running_s'])} | {fmt(r.get('labelled_s'))} | "
            f"{r['binding_429']} | {r['pod_patch']} / {r['pod_patch_409']} / {r['pod_patch_422']} | {fmt(r.get('webhook_cpu_s'))} | "
            f"{fmt(r['api_cpu_s'])} | {fmt(r.get('webhook_peak_rss_mb'), '.0f')} | {r['virtual_pods']} | "
            f"{fmt(r.get('labelled_before_running_pct'), '.0f')}"
            f"{' %' if 'labelled_before_running_pct' in r else ''} | "
            f"{fmt(r.get('label_lag_p50_s'), '.2f')} / {fmt(r.get('label_lag_p99_s'), '.2f')} / "
            f"{fmt(r.get('label_lag_max_s'), '.2f')} |")
    lines += ["", "Where a virtual pod's time went (pods, p50 / p99 s from one stage to the next, as the watch saw them):", ""]
    for r in results:
        lines.append(f"- {r['run']}: {r['way']}: " + "; ".join(
            f"{k} {n} pods {fmt(p50, '.2f')} / {fmt(p99, '.2f')}" for k, (n, p50, p99) in r.get("stages", {}).items()))
    lines += ["", "The API server's calls to the webhook (p50 / p99 ms, interpolated in its histogram's buckets; "
                  "calls; TLS connections it opened, from the webhook's admission_host_tls_handshakes_total):", ""]
    lines += [f"- {r['run']}: {r['way']}: {fmt(r['webhook_latency'][0] * 1000, '.0f')} / "
              f"{fmt(r['webhook_latency'][1] * 1000, '.0f')} ms; {int(r['webhook_latency'][2])} calls; "
              f"{r.get('webhook_connections')} connections" for r in results if r.get("webhook_latency")]
    lines += ["", "Requests the API server's priority and fairness turned away (priority level / flow schema / "
                  "reason: count):", ""]
    lines += [f"- {r['run']}: {r['way']}: " + (", ".join(f"{k}: {v}" for k, v in sorted(r["apf_rejected"].items()))
                                               or "none") for r in results if "apf_rejected" in r]
    lines += ["", "CPU seconds of the other components over each spike:", ""]
    lines += [f"- {r['run']}: {r['way']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r.get("component_cpu_s", {}).items())
              for r in results]
    for r in results:
        if "host_calls" in r:
            lines += ["", f"The host's API calls, spike {r['run']} (admission_host_api_requests_total):", "",
                      "| verb | resource | code | calls |", "|---|---|---|---:|"]
            lines += [f"| {c['verb']} | {c['resource'] or '-'} | {c['code']} | {c['count']} |" for c in r["host_calls"]]
            lines.append(f"\nburst controller's toleration PATCHes: {r['burst_actions']}; label PATCHes after "
                         f"binding: {r['label_outcomes']}; virtual pods never seen labelled: {r['never_labelled']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spike", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="runs, each a spike without and one with (1)")
    parser.add_argument("--pods", type=int, default=1000, help="replicas of the Deployment (1000)")
    parser.add_argument("--qps", type=int, default=500,
                        help="--kube-api-qps of the controller manager and the scheduler (500; 0: their default)")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="leave out the spike with the constant-answer webhook")
    args = parser.parse_args(argv)

    bench = Bench(Path(tempfile.mkdtemp(prefix="bench-spike-")), args.pods, args.qps)
    results = []
    try:
        bench.start()
        for run in range(1, args.runs + 1):
            ways = tuple(w for w in WAYS if args.ceiling or w != "ceiling")
            for way in ways[run % len(ways):] + ways[:run % len(ways)]:  # the order rotates from run to run
                load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                result = bench.spike(way)
                result.update(run=run, load_before=load)
                results.append(result)
                print(f"run {run} {WAYS[way]}: all Running in {fmt(result['running_s'])} s "
                      f"({result['running']} Running), load before {load}", flush=True)
    finally:
        bench.stop()
    text = report(results, bench.cp.release.minor, args.qps)
    print("\n" + text)
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "spike.json").write_text(json.dumps(results, indent=1))
    return 0 if all(r["running_s"] is not None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
