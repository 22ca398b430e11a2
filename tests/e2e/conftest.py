"""Fixtures for end-to-end tests on a real etcd + kube-apiserver + kube-scheduler.

The host runs as ``admission-host serve`` with the credentials of its own ServiceAccount and
deploy/'s RBAC, so every scenario also proves that RBAC sufficient.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest
import yaml

from framework import ApiError, KubeClient
from tests.e2e import cluster
from tests.e2e.host import (HostProcess, install_crds, kubectl, register_webhook, service_account_kubeconfig,
                            wait_for)

VNODE_LABELS = {"k8s.aliyun.com/vnode": "true"}
VNODE_TAINT = {"key": "k8s.aliyun.com/vnode", "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": "k8s.aliyun.com/vnode", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
SELECTORS = "/apis/eci.aliyun.com/v1/selectors"
_counter = itertools.count()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    cp = cluster.ControlPlane(tmp_path_factory.mktemp("control-plane"))
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def admin(control_plane) -> KubeClient:
    return KubeClient.from_kubeconfig(str(control_plane.admin_kubeconfig))


@pytest.fixture(scope="session")
def core_v1(control_plane):
    import kubernetes.client

    return kubernetes.client.CoreV1Api(control_plane.api_client())


@pytest.fixture(scope="session")
def host_kubeconfig(control_plane, admin, tmp_path_factory) -> Path:
    install_crds(control_plane, admin)
    return service_account_kubeconfig(control_plane, admin, tmp_path_factory.mktemp("sa") / "kubeconfig")


@pytest.fixture(scope="session")
def webhook_host(control_plane, admin, host_kubeconfig, tmp_path_factory):
    certs = control_plane.certs
    cert, key = certs.serving_cert("webhook", ips=["127.0.0.1"])
    host = HostProcess(tmp_path_factory.mktemp("host"), host_kubeconfig, cert, key, certs.ca_path).start()
    register_webhook(admin, f"{host.url}/mutate", certs.ca_pem)
    yield host
    host.stop()


class Cluster:
    """What a test needs: nodes, a namespace, Selectors, pods, all cleaned up after it."""

    def __init__(self, cp, admin: KubeClient, core_v1, host: HostProcess):
        self.cp, self.admin, self.core_v1, self.host = cp, admin, core_v1, host
        self.id = f"t{next(_counter)}-{uuid.uuid4().hex[:5]}"
        self.namespaces, self.nodes, self.selectors = [], [], []

    # -- objects --------------------------------------------------------------------------------
    def namespace(self, labels=None, name=None) -> str:
        name = name or f"{self.id}-ns{len(self.namespaces)}"
        self.admin.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": name, "labels": labels or {}}})
        self.namespaces.append(name)
        return name

    def node(self, kind="normal", cpu=None, pods=None, labels=None) -> str:
        """A normal node (1 CPU, 110 pods unless told) or a virtual one (100 CPU, 1000 pods unless told)."""
        name = f"{self.id}-{kind}{len(self.nodes)}"
        if kind == "virtual":
            cluster.create_node(self.core_v1, name, labels=VNODE_LABELS, taints=[VNODE_TAINT], cpu=cpu or "100",
                                pods=pods or "1000")
        else:
            cluster.create_node(self.core_v1, name, labels=labels, cpu=cpu or "1", pods=pods or "110")
        self.nodes.append(name)
        return name

    def apply_selector(self, body_or_path) -> dict:
        """kubectl apply a Selector (a dict, or a file applied exactly as written); wait until the host uses it."""
        if isinstance(body_or_path, (str, Path)):
            out = kubectl(self.cp, "apply", "-f", str(body_or_path), "-o", "json").stdout
        else:
            out = kubectl(self.cp, "apply", "-f", "-", "-o", "json", input=yaml.safe_dump(body_or_path)).stdout
        applied = yaml.safe_load(out)
        name = applied["metadata"]["name"]
        if name not in self.selectors:
            self.selectors.append(name)
        self.wait_selector_seen(name)
        return applied

    def wait_selector_seen(self, name: str) -> dict:
        """The leader reports each Selector it has compiled on its status: that is our signal."""
        def seen():
            obj = self.admin.get(f"{SELECTORS}/{name}")
            status = obj.get("status") or {}
            return obj if status.get("observedGeneration") == obj["metadata"].get("generation") else None
        return wait_for(seen, 20, what=f"Selector {name} seen by the host")

    def delete_selector(self, name: str) -> None:
        before = self.selector_count()
        self.admin.delete(f"{SELECTORS}/{name}")
        self.selectors.remove(name)
        wait_for(lambda: self.selector_count() < before, 20, what=f"Selector {name} gone from the host's cache")

    def selector_count(self) -> int:
        import json

        status, body = self.host.get("/plugins")
        return next(w["objects"] for w in json.loads(body)["watches"] if w["name"] == "eci-selectors")

    def pod(self, name, ns, labels=None, cpu="100m", node_selector=None, annotations=None, **spec) -> dict:
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
                "spec": {"containers": [{"name": "main", "image": "nginx",
                                         "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}],
                         **spec}}
        if node_selector:
            body["spec"]["nodeSelector"] = node_selector
        return self.admin.post(f"/api/v1/namespaces/{ns}/pods", body)

    def deployment(self, name, ns, labels, replicas, cpu="100m") -> dict:
        """A Deployment whose pods carry ``labels``; the controller manager makes its pods."""
        return self.admin.post(f"/apis/apps/v1/namespaces/{ns}/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 5,
                                           "containers": [{"name": "main", "image": "nginx", "resources": {
                                               "requests": {"cpu": cpu, "memory": "64Mi"}}}]}}}})

    def scale(self, ns, name, replicas) -> None:
        self.admin.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
                         {"spec": {"replicas": replicas}}, content_type="application/merge-patch+json")

    def pods(self, ns, labels) -> list:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return self.admin.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector).get("items") or []

    def wait_running(self, ns, labels, count, timeout=60) -> list:
        """Exactly ``count`` pods with ``labels``, every one Running and none being deleted."""
        def check():
            pods = self.pods(ns, labels)
            settled = len(pods) == count and all(
                p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp") for p in pods)
            return pods if settled else None
        return wait_for(check, timeout, 0.2, what=f"{count} Running pods {labels} in {ns}")

    def get_pod(self, ns, name) -> dict:
        return self.admin.get(f"/api/v1/namespaces/{ns}/pods/{name}")

    def wait_bound(self, ns, name, timeout=20) -> dict:
        return wait_for(lambda: (lambda p: p if p["spec"].get("nodeName") else None)(self.get_pod(ns, name)),
                        timeout, what=f"pod {ns}/{name} bound")

    def wait_unschedulable(self, ns, name, timeout=20) -> dict:
        def check():
            p = self.get_pod(ns, name)
            return p if any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
                            for c in p.get("status", {}).get("conditions") or ()) else None
        return wait_for(check, timeout, what=f"pod {ns}/{name} Unschedulable")

    def is_virtual(self, node_name: str) -> bool:
        return "-virtual" in node_name

    # -- cleanup ----------------------------------------------------------------------------------
    def cleanup(self) -> None:
        for name in list(self.selectors):
            try:
                self.admin.delete(f"{SELECTORS}/{name}")
            except ApiError:
                pass
        for ns in self.namespaces:
            if self.cp.release.simulated_nodes:
                # Its controllers stop making pods there, and the namespace controller empties it.
                try:
                    self.admin.delete(f"/api/v1/namespaces/{ns}")
                except ApiError:
                    pass
            # Remove pods at once, or they hold node capacity while the next test runs.
            for p in self.admin.get(f"/api/v1/namespaces/{ns}/pods").get("items") or ():
                try:
                    self.admin.delete(f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}", gracePeriodSeconds=0)
                except ApiError:
                    pass
        for node in self.nodes:
            try:
                self.admin.delete(f"/api/v1/nodes/{node}")
            except ApiError:
                pass


NODEPOOLS = "/apis/karpenter.sh/v1/nodepools"
NODECLAIMS = "/apis/karpenter.sh/v1/nodeclaims"


@pytest.fixture(scope="session")
def karpenter(control_plane):
    """The cluster's autoscaler (Karpenter's KWOK provider); idle while no NodePool exists."""
    control_plane.start_autoscaler()
    yield control_plane
    control_plane.stop_autoscaler()


@pytest.fixture
def nodepool(karpenter, admin):
    """Make NodePools of simulated normal nodes (``max_cpu`` caps the pool; 2-CPU nodes, removed
    2 s after they are empty); each is deleted, nodes and all, after the test."""
    made = []

    def make(name, max_cpu="4", node_cpu="2", labels=None, taints=None):
        admin.post("/apis/karpenter.kwok.sh/v1alpha1/kwoknodeclasses", {
            "apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass", "metadata": {"name": name}})
        admin.post(NODEPOOLS, {
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name},
            "spec": {"limits": {"cpu": max_cpu},
                     "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "2s"},
                     "template": {"metadata": {"labels": labels or {}}, "spec": {
                         "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": name},
                         "expireAfter": "Never", "taints": taints or [],
                         "requirements": [
                             {"key": "karpenter.kwok.sh/instance-cpu", "operator": "In", "values": [node_cpu]},
                             {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]}}}})
        made.append(name)
        return name

    yield make
    for name in made:  # Karpenter finalizes its NodeClaims and nodes: remove pools while it runs
        admin.delete(f"{NODEPOOLS}/{name}")
    wait_for(lambda: not admin.get(NODECLAIMS).get("items"), 90, what="Karpenter's nodes removed")
    for name in made:
        admin.delete(f"/apis/karpenter.kwok.sh/v1alpha1/kwoknodeclasses/{name}")


def pool_nodes(admin, pool) -> list:
    return admin.get("/api/v1/nodes", labelSelector=f"karpenter.sh/nodepool={pool}").get("items") or []


def events_for(admin, ns, pod, component=None) -> list:
    """Events on a pod, from ``component`` (source or reporting component) if given."""
    items = admin.get(f"/api/v1/namespaces/{ns}/events",
                      fieldSelector=f"involvedObject.name={pod}").get("items") or []
    return [e for e in items if component is None
            or component in (e.get("reportingComponent"), (e.get("source") or {}).get("component"))]


@pytest.fixture
def k8s(control_plane, admin, core_v1, webhook_host):
    c = Cluster(control_plane, admin, core_v1, webhook_host)
    yield c
    c.cleanup()
    # Every test starts with no Selectors in the host's cache.
    wait_for(lambda: c.selector_count() == 0, 20, what="Selector cache empty")
