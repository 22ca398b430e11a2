"""Realistic Pods and the AdmissionReview bodies the API server sends for their creation.

``make_pod(6500)`` is a Deployment's pod of about 6.5 KB as serialised by the API server
(several containers with env, probes, resources and mounts, an init container, labels and
annotations from a Helm chart and a service mesh, tolerations, volumes). Other sizes
(2 KB .. 50 KB) scale the number of env entries, then containers, to approach the target.
"""

from __future__ import annotations

import uuid
from typing import Optional

import orjson

DEFAULT_SIZE = 6500


def _container(name: str, image: str, port: int, env: int, mounts: list) -> dict:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [f"--port={port}", "--log-format=json", "--metrics-addr=:9090"],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "env": [{"name": f"{name.upper().replace('-', '_')}_SETTING_{i}", "value": f"value-{i}-{name}"}
                for i in range(env)] + [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        ],
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"}, "initialDelaySeconds": 10,
                          "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"}, "periodSeconds": 5,
                           "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "volumeMounts": mounts,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }


def _pod(containers: int, env: int, name: str, namespace: str) -> dict:
    token_mount = {"name": "kube-api-access-x7k2p", "readOnly": True,
                   "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    app = [_container("web" if i == 0 else f"worker-{i}", f"registry.example.com/shop/web:1.{i}.3", 8080 + i, env,
                      [{"name": "config", "mountPath": "/etc/web"}, {"name": "cache", "mountPath": "/var/cache/web"},
                       token_mount]) for i in range(containers)]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": f"{name}-7d9c5b8f6d-",
            "namespace": namespace,
            "uid": "0c5f0d3e-2b1a-4c4e-9a57-4b7f9a2c1d10",
            "creationTimestamp": None,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": f"{name}-prod",
                       "app.kubernetes.io/version": "1.4.2", "app.kubernetes.io/component": "frontend",
                       "app.kubernetes.io/part-of": "shop", "app.kubernetes.io/managed-by": "Helm",
                       "helm.sh/chart": f"{name}-0.12.1", "pod-template-hash": "7d9c5b8f6d",
                       "security.istio.io/tlsMode": "istio", "team": "storefront", "tier": "web"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                            "prometheus.io/path": "/metrics",
                            "kubectl.kubernetes.io/default-container": "web",
                            "checksum/config": "3f1e6a9c0b7d4e2f8a5c6b1d0e9f7a2b4c3d5e6f7a8b9c0d1e2f3a4b5c6d7e8f",
                            "sidecar.istio.io/status": '{"initContainers":["istio-init"],"containers":["istio-proxy"],'
                                                       '"volumes":["istio-envoy","istio-data"],"imagePullSecrets":null}'},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-7d9c5b8f6d",
                                 "uid": "5b2d8e1f-7c3a-4f6b-9d0e-2a1c3b4d5e6f", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": f"{name}-config", "defaultMode": 420}},
                {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                                  "fieldPath": "metadata.namespace"}}]}},
                ]}},
            ],
            "initContainers": [{"name": "migrate", "image": f"registry.example.com/shop/{name}-migrate:1.4.2",
                                "command": ["/bin/migrate", "--wait"], "resources": {},
                                "volumeMounts": [token_mount],
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "containers": app,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "serviceAccountName": name,
            "serviceAccount": name,
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
                                                    "topologyKey": "kubernetes.io/hostname"}}]}},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    }


def size_of(obj: dict) -> int:
    return len(orjson.dumps(obj))


# What a small pod does without, in this order, to get down to a small target size.
_OPTIONAL = (
    ("spec", "initContainers"), ("spec", "affinity"), ("metadata", "ownerReferences"),
    ("container", "readinessProbe"), ("container", "livenessProbe"), ("container", "securityContext"),
    ("annotations", "sidecar.istio.io/status"), ("annotations", "checksum/config"),
    ("container", "volumeMounts"), ("spec", "volumes"), ("container", "ports"), ("container", "args"),
)


def _lean(pod: dict, target_bytes: int) -> dict:
    for where, key in _OPTIONAL:
        if size_of(pod) <= target_bytes:
            break
        if where == "spec":
            pod["spec"].pop(key, None)
        elif where == "metadata":
            pod["metadata"].pop(key, None)
        elif where == "annotations":
            pod["metadata"]["annotations"].pop(key, None)
        else:
            for container in pod["spec"]["containers"]:
                container.pop(key, None)
    return pod


def make_pod(target_bytes: int = DEFAULT_SIZE, name: str = "storefront", namespace: str = "shop") -> dict:
    """A pod whose JSON is close to ``target_bytes`` (within a few percent; never below ~1.5 KB)."""
    if size_of(_pod(1, 0, name, namespace)) > target_bytes:
        return _lean(_pod(1, 0, name, namespace), target_bytes)
    containers = 3
    while containers > 1 and size_of(_pod(containers, 0, name, namespace)) > target_bytes:
        containers -= 1
    while size_of(_pod(containers + 1, 0, name, namespace)) <= target_bytes * 0.6 and containers < 40:
        containers += 1
    best = _pod(containers, 0, name, namespace)
    for env in range(1, 200):
        candidate = _pod(containers, env, name, namespace)
        if size_of(candidate) > target_bytes:
            # keep whichever is closer to the target
            if size_of(candidate) - target_bytes < target_bytes - size_of(best):
                best = candidate
            break
        best = candidate
    return best


def review(pod: dict, *, api_version: str = "admission.k8s.io/v1", uid: Optional[str] = None) -> dict:
    meta = pod["metadata"]
    return {
        "kind": "AdmissionReview",
        "apiVersion": api_version,
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": meta.get("namespace", "default"),
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": "8b0e6b9a-2f9e-4a43-8b1a-0c9d8e7f6a5b",
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                    "system:authenticated"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def review_body(target_bytes: int = DEFAULT_SIZE, **kw) -> bytes:
    return orjson.dumps(review(make_pod(target_bytes), **kw))


if __name__ == "__main__":
    for size in (2000, 6500, 20000, 50000):
        pod = make_pod(size)
        print(f"target {size:>6}: pod {size_of(pod):>6} bytes, {len(pod['spec']['containers'])} containers, "
              f"review {len(review_body(size)):>6} bytes")
