"""A bad day on the current release, counted: several host replicas answering at once, the API
server gone for seconds, the host rolled while pods are created, and an outage of every replica.

Replicas run as the suite runs the host (``HostProcess``) behind ``Endpoints``: a round-robin TCP
front that, like a Service's endpoints, routes new connections only to replicas whose
``/readyz`` answered 200, a look every second taking effect a second later (the endpoints
controller, then kube-proxy); connections already open stay where they are, as with kube-proxy.
"""

from __future__ import annotations

import collections
import threading
import time
import urllib.error
from pathlib import Path

import pytest

from framework import ApiError
from tests.e2e import cluster
from tests.e2e.cluster import selected_release
from tests.e2e.conftest import TOLERATION, VNODE_LABELS, VNODE_TAINT, events_for
from tests.e2e.host import HostProcess, RoundRobinProxy, register_webhook, wait_for

pytestmark = pytest.mark.skipif(not selected_release().simulated_nodes,
                                reason="needs kube-controller-manager and KWOK (the current release)")
SELECTOR_LABEL = "eci.aliyun.com/selector"
SELECTORS = "/apis/eci.aliyun.com/v1/selectors"
CLIENTS = 16  # the rolling update's concurrent pod creators: the API server keeps as many connections


class Endpoints:
    """Hosts behind one address, routed to while ready; ``replace`` rolls one as a Deployment would."""

    def __init__(self, k8s, workdir: Path, count: int, shutdown_delay: float = 0.0):
        args = k8s.host.args
        self.k8s, self.workdir = k8s, Path(workdir)
        self.kubeconfig = args[args.index("--kubeconfig") + 1]
        self.cert, self.key = (Path(args[args.index(flag) + 1]) for flag in ("--tls-cert-file",
                                                                              "--tls-private-key-file"))
        self.delay = shutdown_delay
        self.started = 0
        self.hosts = [self.start_host() for _ in range(count)]
        self.proxy = RoundRobinProxy([h.port for h in self.hosts]).start()
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._follow_readiness, daemon=True)
        self._watch.start()
        register_webhook(k8s.admin, f"https://127.0.0.1:{self.proxy.port}/mutate", k8s.cp.certs.ca_pem)

    def start_host(self) -> HostProcess:
        self.started += 1
        return HostProcess(self.workdir / f"host-{self.started}", self.kubeconfig, self.cert, self.key,
                           self.k8s.cp.certs.ca_path,
                           extra_args=["--shutdown-delay-seconds", str(self.delay)]).start()

    def _follow_readiness(self, every: float = 1.0, lag: float = 1.0) -> None:
        seen = collections.deque()  # (when it takes effect, ready ports)
        while not self._stop.wait(every / 2):
            while seen and seen[0][0] <= time.monotonic():
                self.proxy.backends = seen.popleft()[1] or self.proxy.backends
            if seen and seen[-1][0] > time.monotonic() + lag - every:
                continue
            ready = []
            for host in list(self.hosts):
                try:
                    if host.proc.poll() is None and host.get("/readyz")[0] == 200:
                        ready.append(host.port)
                except (OSError, urllib.error.URLError):
                    pass
            seen.append((time.monotonic() + lag, ready))

    def replace(self, old: HostProcess) -> HostProcess:
        """Start a new replica, wait until it is an endpoint, then SIGTERM the old one and wait for it."""
        new = self.start_host()
        self.hosts.append(new)
        wait_for(lambda: new.port in self.proxy.backends, 20, what="the new replica an endpoint")
        old.proc.send_signal(15)
        assert old.proc.wait(self.delay + 30) == 0, old.log_tail()
        self.hosts.remove(old)
        return new

    def close(self) -> None:
        register_webhook(self.k8s.admin, f"{self.k8s.host.url}/mutate", self.k8s.cp.certs.ca_pem)
        self._stop.set()
        self._watch.join(5)
        self.proxy.stop()
        for host in self.hosts:
            host.stop(timeout=self.delay + 20)


@pytest.fixture
def endpoints(k8s, tmp_path):
    made = []

    def make(count, shutdown_delay=0.0):
        made.append(Endpoints(k8s, tmp_path, count, shutdown_delay))
        return made[-1]

    yield make
    for e in made:
        e.close()


def on_virtual(k8s, pods) -> list:
    return [p for p in pods if p["spec"].get("nodeName") and k8s.is_virtual(p["spec"]["nodeName"])
            and not p["metadata"].get("deletionTimestamp")]


def counting_virtual(k8s, ns, labels, seconds, until=None):
    """The most pods on virtual nodes seen, sampled every 0.2 s for ``seconds`` (or until ``until(count)``)."""
    most, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        count = len(on_virtual(k8s, k8s.pods(ns, labels)))
        most = max(most, count)
        if until is not None and until(count):
            break
        time.sleep(0.2)
    return most


def summary(k8s, pods) -> dict:
    """Pods by where they are: phase, virtual or normal node, tolerated, the scheduler's condition."""
    out = {}
    for p in pods:
        node = p["spec"].get("nodeName")
        cond = next((f"{c.get('status')}/{c.get('reason')}" for c in p["status"].get("conditions") or ()
                     if c.get("type") == "PodScheduled"), "no condition")
        key = (p["status"].get("phase"), "virtual" if node and k8s.is_virtual(node) else "normal" if node else "-",
               "tolerated" if TOLERATION in (p["spec"].get("tolerations") or []) else "untolerated", cond)
        out[key] = out.get(key, 0) + 1
    return out


def big_virtual_node(k8s) -> str:
    """A virtual node with room for hundreds of the suite's pods (64Mi each): 400 CPU, 64Gi."""
    name = f"{k8s.id}-virtual{len(k8s.nodes)}"
    cluster.create_node(k8s.core_v1, name, labels=VNODE_LABELS, taints=[VNODE_TAINT], cpu="400", memory="64Gi",
                        pods="1000")
    k8s.nodes.append(name)
    return name


def capped_prefer(k8s, name, app, cap, **spec):
    return k8s.apply_selector({
        "apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
        "spec": {"objectLabels": {"matchLabels": {"app": app}}, "policy": {"normalNodePrefer": {}},
                 "maxVirtualPods": cap, **spec}})


@pytest.mark.parametrize("replicas, runs", [(2, 3), (3, 2)])
def test_the_cap_is_exact_with_several_replicas(k8s, endpoints, replicas, runs):
    """maxVirtualPods 10, 60 pods, room for 10 on a normal node: never more than 10 on virtual nodes."""
    front = endpoints(replicas)
    for run in range(runs):
        ns, app = k8s.namespace(), f"{k8s.id}-r{run}"
        normal, virtual = k8s.node("normal"), k8s.node("virtual")
        capped_prefer(k8s, app, app, 10)
        labels = {"app": app}
        k8s.deployment("burst", ns, labels, replicas=60, cpu="95m")  # 10 fit the normal node
        most = counting_virtual(k8s, ns, labels, 25)
        pods = k8s.pods(ns, labels)
        assert most == 10, f"run {run}: {most} pods on virtual nodes at most, for a cap of 10"
        assert len(on_virtual(k8s, pods)) == 10
        on_normal = [p for p in pods if p["spec"].get("nodeName") == normal]
        assert len(on_normal) == 10 and sum(1 for p in pods if not p["spec"].get("nodeName")) == 40
        # Each replica's share: the cap held with every one of them answering bindings.
        assert front.proxy.connections >= replicas
        k8s.admin.delete(f"/apis/apps/v1/namespaces/{ns}/deployments/burst")
        for p in pods:
            try:
                k8s.admin.delete(f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}", gracePeriodSeconds=0)
            except ApiError:
                pass
        for node in (normal, virtual):
            k8s.admin.delete(f"/api/v1/nodes/{node}")
            k8s.nodes.remove(node)


def test_a_tiers_cap_is_exact_with_several_replicas(k8s, endpoints):
    """A tier's maxPods holds as maxVirtualPods does: 60 pods that may all use a spot node with room for
    them (its tolerations given at creation: the first tier is open), maxPods 10, two replicas binding."""
    front = endpoints(2)
    ns, app = k8s.namespace(), f"{k8s.id}-tier"
    spot = f"{k8s.id}-spot"
    cluster.create_node(k8s.core_v1, spot, labels={"pool": "spot"}, cpu="100", pods="1000",
                        taints=[{"key": "spot", "value": "true", "effect": "NoSchedule"}])
    k8s.nodes.append(spot)
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": app},
                        "spec": {"objectLabels": {"matchLabels": {"app": app}}, "tiers": [
                            {"name": "spot", "nodeLabels": {"pool": "spot"}, "maxPods": 10,
                             "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]}]}})
    labels = {"app": app}
    k8s.deployment("burst", ns, labels, replicas=60, cpu="95m")

    def bound():
        return sum(1 for p in k8s.pods(ns, labels) if p["spec"].get("nodeName") == spot
                   and not p["metadata"].get("deletionTimestamp"))

    most, deadline = 0, time.monotonic() + 25
    while time.monotonic() < deadline:
        most = max(most, bound())
        time.sleep(0.2)
    pods = k8s.pods(ns, labels)
    assert most == 10 and bound() == 10, f"{most} pods in tier spot at most, for maxPods 10"
    assert sum(1 for p in pods if not p["spec"].get("nodeName")) == 50
    assert front.proxy.connections >= 2
    wait_for(lambda: sum(1 for p in k8s.pods(ns, labels) if p["metadata"]["labels"].get("eci.aliyun.com/tier")
                         == "spot") == 10, 20, what="the ten pods labelled with their tier")


def test_a_lowered_cap_is_brought_back_by_eviction(k8s):
    ns, app = k8s.namespace(), k8s.id
    k8s.node("virtual")
    sel = {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": app},
           "spec": {"objectLabels": {"matchLabels": {"app": app}}, "policy": {"fair": {}}, "maxVirtualPods": 20,
                    "capEnforcement": "Evict"}}
    k8s.apply_selector(sel)
    labels = {"app": app}
    k8s.deployment("web", ns, labels, replicas=30, cpu="10m")
    wait_for(lambda: len(on_virtual(k8s, k8s.pods(ns, labels))) == 20, 60, 0.2, what="20 pods on virtual nodes")
    sel["spec"]["maxVirtualPods"] = 10
    k8s.apply_selector(sel)
    # Over by 10: the newest are evicted (10 a minute at most), their replacements wait at the cap.
    wait_for(lambda: len(on_virtual(k8s, k8s.pods(ns, labels))) == 10, 40, 0.2, what="back to 10")
    assert counting_virtual(k8s, ns, labels, 8) == 10
    warned = [e for e in k8s.admin.get("/api/v1/namespaces/default/events",
                                       fieldSelector=f"involvedObject.name={app}").get("items") or ()
              if e["reason"] == "VirtualPodCapExceeded"]
    assert warned and "10 past maxVirtualPods 10" in warned[0]["message"]
    status = wait_for(lambda: (lambda s: s if s.get("overCap") == 0 and s.get("virtual") == "10/10" else None)(
        k8s.admin.get(f"{SELECTORS}/{app}").get("status") or {}), 20, what="status back within the cap")
    assert status["virtualPods"] == 10
    evicted = [e for p in k8s.pods(ns, labels) for e in events_for(k8s.admin, ns, p["metadata"]["name"])
               if e["reason"] == "VirtualPodCapEnforced"]
    assert evicted == []  # the evicted pods are gone; their replacements were never evicted


def test_no_pod_is_stranded_by_api_server_blips(k8s):
    """150 pods bursting while the API server goes away for 3 s, then restarts: all Running in time."""
    ns, app = k8s.namespace(), k8s.id
    k8s.node("normal")
    big_virtual_node(k8s)
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": app},
                        "spec": {"objectLabels": {"matchLabels": {"app": app}}, "policy": {"normalNodePrefer": {}}}})
    labels = {"app": app}
    started = time.monotonic()
    k8s.deployment("burst", ns, labels, replicas=150, cpu="50m")
    time.sleep(2)
    k8s.cp.stop_apiserver()
    time.sleep(3)
    k8s.cp.start_apiserver()
    time.sleep(2)
    k8s.cp.restart_apiserver()
    back = time.monotonic()
    try:
        k8s.wait_running(ns, labels, 150, timeout=60 + (back - started))
    except TimeoutError:
        pytest.fail(f"not all Running in time: {summary(k8s, k8s.pods(ns, labels))}")
    print(f"150 Running {time.monotonic() - back:.1f} s after the API server's restart")
    pods = k8s.pods(ns, labels)
    assert all(TOLERATION in (p["spec"].get("tolerations") or []) for p in on_virtual(k8s, pods))


def test_a_rolling_update_of_the_host_loses_no_mutation(k8s, endpoints):
    """Pods created at 50 a second (by 16 clients) through two rollouts of both replicas. Without the
    shutdown delay 1-4 pods a rollout were admitted unmutated here; with it, none."""
    ns, app = k8s.namespace(), k8s.id
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": app},
                        "spec": {"objectLabels": {"matchLabels": {"app": app}}, "policy": {"fair": {}}}})
    front = endpoints(2, shutdown_delay=5.0)
    created, errors, stop = [], [], threading.Event()

    def create(client):
        i = 0
        while not stop.is_set():
            due = time.monotonic() + CLIENTS / 50
            try:
                created.append(k8s.pod(f"c{client}-{i}", ns, labels={"app": app}))
            except ApiError as exc:
                errors.append(repr(exc))
            i += 1
            time.sleep(max(0.0, due - time.monotonic()))

    creators = [threading.Thread(target=create, args=(c,), daemon=True) for c in range(CLIENTS)]
    started = time.monotonic()
    for creator in creators:
        creator.start()
    try:
        time.sleep(2)
        for _ in range(2):  # two rollouts: each replica replaced twice
            for old in list(front.hosts):
                front.replace(old)
        time.sleep(2)
    finally:
        stop.set()
        for creator in creators:
            creator.join(30)
    elapsed = time.monotonic() - started
    unmutated = [p["metadata"]["name"] for p in created if TOLERATION not in (p["spec"].get("tolerations") or [])]
    print(f"rolling update: {len(created)} pods created, {len(unmutated)} unmutated, {len(errors)} API errors")
    assert len(created) > 30 * elapsed and errors == [] and unmutated == [], (len(created), errors[:3], unmutated[:10])


def test_what_an_outage_skipped_is_repaired(k8s):
    """The only replica down for 20 s: pods created meanwhile are not mutated; back, the leader repairs them."""
    ns = k8s.namespace()
    k8s.node("virtual")
    only, fair = f"{k8s.id}-only", f"{k8s.id}-fair"
    for name, policy in ((only, "virtualNodeOnly"), (fair, "fair")):
        k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
                            "spec": {"objectLabels": {"matchLabels": {"app": name}}, "policy": {policy: {}},
                                     "effect": {"annotations": {"team": name}, "labels": {"burst": "yes"}}}})
    assert k8s.host.stop() == 0
    try:
        outage = time.monotonic()
        for i in range(5):
            k8s.pod(f"only-{i}", ns, labels={"app": only})  # no toleration: stays Pending
            k8s.pod(f"fair-{i}", ns, labels={"app": fair}, tolerations=[TOLERATION])  # bound with no effect
        wait_for(lambda: all(k8s.get_pod(ns, f"fair-{i}")["spec"].get("nodeName") for i in range(5)), 30,
                 what="the tolerated pods bound")
        time.sleep(max(0.0, 20 - (time.monotonic() - outage)))
        assert all(TOLERATION not in (k8s.get_pod(ns, f"only-{i}")["spec"].get("tolerations") or [])
                   for i in range(5))
    finally:
        k8s.host.start()
    back = time.monotonic()

    def repaired():
        pods = [k8s.get_pod(ns, f"{kind}-{i}") for kind in ("only", "fair") for i in range(5)]
        return all(TOLERATION in (p["spec"].get("tolerations") or []) and p["spec"].get("nodeName")
                   and p["metadata"].get("labels", {}).get(SELECTOR_LABEL) for p in pods) and pods

    pods = wait_for(repaired, 60, 0.5, what="tolerations, labels and annotations restored")
    print(f"{len(pods)} pods repaired {time.monotonic() - back:.1f} s after the host came back")
    for p in pods:
        name = p["metadata"]["labels"]["app"]
        assert p["metadata"]["annotations"].get("team") == name and p["metadata"]["labels"]["burst"] == "yes"
        assert k8s.is_virtual(p["spec"]["nodeName"])
    reasons = {e["reason"] for p in pods for e in events_for(k8s.admin, ns, p["metadata"]["name"],
                                                                "admission-host-eci-profile")}
    assert {"VirtualNodeTolerationsRestored", "VirtualNodeEffectRestored"} <= reasons


def test_pods_waiting_on_the_cap_are_looked_at_about_once_per_30_seconds(k8s):
    """40 pods held at the cap for 60 s: the leader's looks at them, from its work queue's metrics."""
    ns, app = k8s.namespace(), k8s.id
    k8s.node("normal")
    big_virtual_node(k8s)
    capped_prefer(k8s, app, app, 10)
    labels = {"app": app}
    k8s.deployment("burst", ns, labels, replicas=60, cpu="95m")  # 10 on the normal node, 10 virtual, 40 wait
    wait_for(lambda: len(on_virtual(k8s, k8s.pods(ns, labels))) == 10, 60, 0.2, what="10 on virtual nodes")
    wait_for(lambda: (k8s.admin.get(f"{SELECTORS}/{app}").get("status") or {}).get("waitingPods") == 40, 30,
             what="40 pods waiting at the cap")

    def looks() -> float:
        sample = 'admission_host_workqueue_work_duration_seconds_count{name="eci-profile-burst"} '
        return float(next(line for line in k8s.host.get("/metrics")[1].splitlines()
                          if line.startswith(sample)).rsplit(" ", 1)[1])

    before, window = looks(), 60.0
    time.sleep(window)
    per_pod_per_30s = (looks() - before) / 40 / (window / 30)
    print(f"looks per waiting pod per 30 s: {per_pod_per_30s:.2f}")
    assert per_pod_per_30s <= 1.2
    delayed = [e for p in k8s.pods(ns, labels)[:10] for e in events_for(k8s.admin, ns, p["metadata"]["name"])
               if e["reason"] == "BurstDelayed"]
    assert all(e.get("count", 1) == 1 for e in delayed)  # told once, not once a look


def test_virtual_node_only_pods_that_ran_on_normal_nodes_come_back_through_the_webhook(k8s):
    """Created while the only replica was down, a virtualNodeOnly Deployment's pods ran on a normal
    node; with evictFromNormalNodes the leader evicts them and their replacements go virtual."""
    ns, app = k8s.namespace(), k8s.id
    k8s.node("normal")
    k8s.node("virtual")
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": app},
                        "spec": {"objectLabels": {"matchLabels": {"app": app}},
                                 "policy": {"virtualNodeOnly": {"evictFromNormalNodes": True}}}})
    labels = {"app": app}
    assert k8s.host.stop() == 0
    try:
        k8s.deployment("web", ns, labels, replicas=3)
        pods = k8s.wait_running(ns, labels, 3)
        assert not on_virtual(k8s, pods)  # unmutated: nothing sent them to the virtual node
    finally:
        k8s.host.start()
    # The leader looks every 30 s; the evicted pods' replacements are mutated at creation.
    pods = wait_for(lambda: (lambda p: p if len(on_virtual(k8s, p)) == 3 and len(p) == 3 else None)(
        k8s.pods(ns, labels)), 90, 0.5, what="the replacements on the virtual node")
    assert all(TOLERATION in p["spec"]["tolerations"] for p in pods)
    reasons = [e["reason"] for e in k8s.admin.get(f"/api/v1/namespaces/{ns}/events").get("items") or ()
               if (e.get("source") or {}).get("component") == "admission-host-eci-profile"]
    assert reasons.count("MisplacedPodEvicted") == 3
