"""A generated cluster for ECI-Profile, and the admission requests its API server would send.

The server process (``bench/serve_variant.py --plugin eci``) fills its caches from
:func:`objects`; the load generator sends :func:`mix`. Both follow the same deterministic rules,
so a binding names a pending pod the server has cached, and a "matching" pod carries the labels
of a Selector the server has loaded.

Selectors (``sel-00000`` ..), by ``i % 10`` (a mix of what Selectors look like in practice):

| i % 10 | objectLabels | namespaceLabels |
|---|---|---|
| 0-5 | ``matchLabels: {app.kubernetes.io/name: app-i}`` | - |
| 6   | ``matchLabels: {app.kubernetes.io/name: app-i}`` | ``matchLabels: {team: team-(i % 50)}`` |
| 7   | ``app.kubernetes.io/name In (app-i, app-i-canary)``, ``tier NotIn (db)`` | - |
| 8   | - | ``matchLabels: {burst-pool: pool-(i // 10)}`` (a whole namespace bursts) |
| 9   | ``workload.example.com/app-i Exists`` | - |

policy by ``i % 4``: fair, normalNodeOnly, normalNodePrefer, virtualNodeOnly; priority 0-5;
effect: two annotations (``k8s.aliyun.com/eci-use-specs``, ``pod-deletion-cost: -1000``), and on
every other Selector a label too.

Namespaces ``ns-j``: labels ``team``, ``env``, and on every tenth (``j % 10 == 9``) ``burst-pool``.
Nodes ``node-k``: every tenth is virtual (``k8s.aliyun.com/vnode=true``). Objects are full-size
(managedFields, node status with images, pod specs): the watches' transforms strip them as they
would strip what the API server lists.

Pending pods ``pend-i`` (no ``spec.nodeName``, ``PodScheduled=False``): the even ones match a
Selector (``i % 10`` in 0-5), the odd ones none.

The request mix (weights configurable), each request a distinct object:

| class | request | answer |
|---|---|---|
| ``create-match`` | pod CREATE matching a Selector, half of them fair, half virtualNodeOnly | patch (a toleration; for virtualNodeOnly also nodeSelector, annotations, labels) |
| ``create-nomatch`` | pod CREATE that no Selector matches | no patch |
| ``bind-virtual`` | pods/binding of a matching pending pod to a virtual node | patch (the Selector's annotations on the Binding) |
| ``bind-normal`` | pods/binding to a normal node | no patch |
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from typing import Dict, Iterator, List, Tuple

import orjson

from bench.pods import DEFAULT_SIZE, make_pod

CLASSES = ("create-match", "create-nomatch", "bind-virtual", "bind-normal")
DEFAULT_MIX = (25, 25, 25, 25)
POLICIES = ("fair", "normalNodeOnly", "normalNodePrefer", "virtualNodeOnly")
VIRTUAL_LABELS = {"k8s.aliyun.com/vnode": "true", "type": "virtual-kubelet"}
NAME_LABEL = "app.kubernetes.io/name"

_MANAGED = [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
             "time": "2026-11-27T10:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {f"f:l{i}": {} for i in range(8)}}}}]


@dataclasses.dataclass(frozen=True)
class Params:
    selectors: int = 1_000
    namespaces: int = 10_000
    nodes: int = 5_000
    pending_pods: int = 20_000
    pod_size: int = DEFAULT_SIZE

    def __post_init__(self):
        if self.namespaces < 100 or self.nodes < 10 or self.selectors < 10 or self.pending_pods < 2:
            raise ValueError("at least 10 Selectors, 100 namespaces, 10 nodes and 2 pending pods")

    def args(self) -> List[str]:
        return ["--selectors", str(self.selectors), "--namespaces", str(self.namespaces), "--nodes",
                str(self.nodes), "--pending-pods", str(self.pending_pods), "--pod-size", str(self.pod_size)]

    def describe(self) -> str:
        return (f"{self.selectors:,} Selectors, {self.namespaces:,} namespaces, {self.nodes:,} nodes, "
                f"{self.pending_pods:,} pending pods, pods of {self.pod_size:,} bytes")


# -- the cluster ---------------------------------------------------------------------------------
def selector(i: int) -> dict:
    kind = i % 10
    spec: Dict = {"policy": {POLICIES[i % 4]: {}}, "priority": (i * 7) % 6,
                  "effect": {"annotations": {"k8s.aliyun.com/eci-use-specs": "2-4Gi",
                                             "controller.kubernetes.io/pod-deletion-cost": -1000}}}
    if i % 2:
        spec["effect"]["labels"] = {"eci.example.com/burst": "true"}
    if kind <= 6:
        spec["objectLabels"] = {"matchLabels": {NAME_LABEL: f"app-{i}"}}
        if kind == 6:
            spec["namespaceLabels"] = {"matchLabels": {"team": f"team-{i % 50}"}}
    elif kind == 7:
        spec["objectLabels"] = {"matchExpressions": [
            {"key": NAME_LABEL, "operator": "In", "values": [f"app-{i}", f"app-{i}-canary"]},
            {"key": "tier", "operator": "NotIn", "values": ["db"]}]}
    elif kind == 8:
        spec["namespaceLabels"] = {"matchLabels": {"burst-pool": f"pool-{i // 10}"}}
    else:
        spec["objectLabels"] = {"matchExpressions": [{"key": f"workload.example.com/app-{i}", "operator": "Exists"}]}
    return {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector",
            "metadata": {"name": f"sel-{i:05d}", "uid": str(uuid.UUID(int=i + 1)), "generation": 1,
                         "resourceVersion": str(100 + i)},
            "spec": spec}


def namespace(j: int) -> dict:
    labels = {"team": f"team-{j % 50}", "env": "prod" if j % 3 else "dev",
              "kubernetes.io/metadata.name": f"ns-{j}"}
    if j % 10 == 9:
        labels["burst-pool"] = f"pool-{j // 10}"
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": f"ns-{j}", "uid": str(uuid.UUID(int=(1 << 40) + j)), "resourceVersion": str(j),
                         "labels": labels, "managedFields": _MANAGED},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def is_virtual(k: int) -> bool:
    return k % 10 == 0


def node(k: int) -> dict:
    if is_virtual(k):
        labels = {**VIRTUAL_LABELS, "kubernetes.io/hostname": f"node-{k}", "kubernetes.io/role": "agent",
                  "topology.kubernetes.io/zone": f"zone-{k % 3}"}
    else:
        labels = {"kubernetes.io/hostname": f"node-{k}", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "node.kubernetes.io/instance-type": "ecs.g7.2xlarge", "topology.kubernetes.io/zone": f"zone-{k % 3}",
                  "topology.kubernetes.io/region": "cn-hangzhou", "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": "amd64", "node-role.kubernetes.io/worker": ""}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{k}", "uid": str(uuid.UUID(int=(2 << 40) + k)), "resourceVersion": str(k),
                         "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                         "managedFields": _MANAGED},
            "spec": {"podCIDR": f"10.{k // 250 % 250}.{k % 250}.0/24", "providerID": f"alicloud://node-{k}"},
            "status": {"capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "allocatable": {"cpu": "7900m", "memory": "30Gi", "pods": "110"},
                       "conditions": [{"type": t, "status": "False" if t != "Ready" else "True",
                                       "lastHeartbeatTime": "2026-11-27T10:00:00Z", "reason": f"Kubelet{t}",
                                       "message": "kubelet is posting ready status"}
                                      for t in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")],
                       "images": [{"names": [f"registry.example.com/team/image-{x}@sha256:{'ab' * 32}",
                                             f"registry.example.com/team/image-{x}:v1.{x}"], "sizeBytes": 10_000_000 + x}
                                  for x in range(20)],
                       "nodeInfo": {"kubeletVersion": "v1.28.3", "osImage": "Alibaba Cloud Linux 3",
                                    "containerRuntimeVersion": "containerd://1.6.28"}}}


def _plain_namespace(params: Params, n: int) -> int:
    """A namespace without a burst pool (no namespace-wide Selector reaches its pods)."""
    j = (n * 7919) % params.namespaces
    return j - 1 if j % 10 == 9 else j


def _simple_selector(params: Params, n: int) -> int:
    """A Selector that matches on the pod's name label alone (``i % 10`` in 0-5)."""
    s = (n * 104729) % params.selectors
    return s - s % 10 + (s % 10) % 6


_templates: Dict[int, bytes] = {}


def _pod_template(size: int) -> bytes:
    if size not in _templates:
        _templates[size] = orjson.dumps(make_pod(size))
    return _templates[size]


def _pod(params: Params, size: int, name_label: str, namespace_index: int, extra_labels=None) -> dict:
    pod = orjson.loads(_pod_template(size))
    meta = pod["metadata"]
    meta["namespace"] = f"ns-{namespace_index}"
    meta["labels"][NAME_LABEL] = name_label
    meta["labels"]["app.kubernetes.io/instance"] = f"{name_label}-prod"
    if extra_labels:
        meta["labels"].update(extra_labels)
    meta["generateName"] = f"{name_label}-7d9c5b8f6d-"
    return pod


def pending_pod_ref(params: Params, i: int) -> Tuple[str, str, bool]:
    """``(namespace, name, matches a Selector)`` of pending pod ``i``."""
    return f"ns-{_plain_namespace(params, i)}", f"pend-{i:06d}", i % 2 == 0


def pending_pod(params: Params, i: int) -> dict:
    namespace_name, name, matching = pending_pod_ref(params, i)
    app = f"app-{_simple_selector(params, i // 2)}" if matching else f"other-{i}"
    pod = _pod(params, min(params.pod_size, DEFAULT_SIZE), app, _plain_namespace(params, i))
    meta = pod["metadata"]
    meta.update(name=name, uid=str(uuid.UUID(int=(3 << 40) + i)), resourceVersion=str(1000 + i),
                creationTimestamp="2026-11-27T10:00:00Z", managedFields=_MANAGED)
    pod["status"] = {"phase": "Pending", "qosClass": "Burstable",
                     "conditions": [{"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                                     "lastTransitionTime": "2026-11-27T10:00:00Z",
                                     "reason": "Unschedulable" if i % 20 == 1 else "SchedulerError",
                                     "message": "0/5000 nodes are available"}]}
    return pod


def objects(params: Params) -> Iterator[dict]:
    """Every object of the cluster, one at a time (as a reflector decodes a list page by page)."""
    for i in range(params.selectors):
        yield selector(i)
    for j in range(params.namespaces):
        yield namespace(j)
    for k in range(params.nodes):
        yield node(k)
    for i in range(params.pending_pods):
        yield pending_pod(params, i)


# -- the requests ----------------------------------------------------------------------------------
def _create_review(pod: dict, n: int) -> dict:
    meta = pod["metadata"]
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {
        "uid": str(uuid.UUID(int=(4 << 40) + n)),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": meta["namespace"], "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                     "uid": "8b0e6b9a-2f9e-4a43-8b1a-0c9d8e7f6a5b",
                     "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
        "object": pod, "oldObject": None, "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}}


def _binding_review(namespace_name: str, pod_name: str, node_name: str, n: int) -> dict:
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {
        "uid": str(uuid.UUID(int=(5 << 40) + n)),
        "kind": {"group": "", "version": "v1", "kind": "Binding"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "subResource": "binding",
        "requestKind": {"group": "", "version": "v1", "kind": "Binding"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"}, "requestSubResource": "binding",
        "name": pod_name, "namespace": namespace_name, "operation": "CREATE",
        "userInfo": {"username": "system:kube-scheduler", "groups": ["system:authenticated"]},
        "object": {"kind": "Binding", "apiVersion": "v1",
                   "metadata": {"name": pod_name, "namespace": namespace_name,
                                "uid": str(uuid.UUID(int=(3 << 40) + n)), "creationTimestamp": None},
                   "target": {"kind": "Node", "name": node_name}},
        "oldObject": None, "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}}


def _patching_selectors(params: Params, policy: int) -> List[int]:
    """Selectors of a policy that changes a pod at creation (0: fair, 3: virtualNodeOnly)."""
    return [i for i in range(policy, params.selectors, 4) if i % 10 != 8 or 10 * (i // 10) + 9 < params.namespaces]


def request(params: Params, cls: str, n: int, size: int = 0) -> dict:
    """The ``n``-th distinct AdmissionReview of class ``cls``."""
    size = size or params.pod_size
    if cls == "create-match":  # half fair (one toleration), half virtualNodeOnly (five operations)
        chosen = _patching_selectors(params, 0 if n % 2 else 3)
        s = chosen[(n * 7919) % len(chosen)]
        kind = s % 10
        if kind == 8:  # a pod of any labels in the burst pool's namespace
            return _create_review(_pod(params, size, f"batch-{n}", 10 * (s // 10) + 9), n)
        ns = s % 50 if kind == 6 else _plain_namespace(params, n)  # kind 6: a namespace of team-(s % 50)
        if kind == 9:
            return _create_review(_pod(params, size, f"web-{n}", ns, {f"workload.example.com/app-{s}": "x"}), n)
        return _create_review(_pod(params, size, f"app-{s}", ns), n)
    if cls == "create-nomatch":
        return _create_review(_pod(params, size, f"other-{n}", _plain_namespace(params, n)), n)
    virtual = [k for k in range(0, params.nodes, 10)]
    if cls == "bind-virtual":
        i = (2 * n * 7919) % params.pending_pods
        i -= i % 2  # an even one: it matches a Selector
        ns, name, _ = pending_pod_ref(params, i)
        return _binding_review(ns, name, f"node-{virtual[n % len(virtual)]}", n)
    if cls == "bind-normal":
        i = (n * 7919) % params.pending_pods
        ns, name, _ = pending_pod_ref(params, i)
        k = (n * 31) % params.nodes
        if is_virtual(k):
            k = (k + 1) % params.nodes
        return _binding_review(ns, name, f"node-{k}", n)
    raise ValueError(f"unknown request class {cls!r}")


def mix(params: Params, weights=DEFAULT_MIX, count: int = 400, classes=CLASSES, seed: int = 1,
        size: int = 0) -> List[Tuple[str, bytes]]:
    """``count`` distinct requests in a shuffled order, ``weights`` (per class, in percent) of each."""
    total = sum(weights)
    out: List[Tuple[str, bytes]] = []
    for cls, weight in zip(classes, weights):
        for n in range(round(count * weight / total)):
            out.append((cls, orjson.dumps(request(params, cls, n, size))))
    random.Random(seed).shuffle(out)
    return out
