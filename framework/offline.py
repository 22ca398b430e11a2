"""The host with no API server: caches filled from ``--objects`` files, saying what the files
cannot fill, and the AdmissionReviews the API server would send (``admission-host review``)."""

from __future__ import annotations

import copy
import difflib
import logging
import random
from typing import Dict, List, Optional, Sequence, Tuple

from framework.admission.review import build

log = logging.getLogger("admission_host")

OPERATIONS = ("CREATE", "UPDATE", "DELETE")
SCHEDULER = "system:kube-scheduler"
USER = "admission-host-review"
# Built-in kinds that live in a namespace: "default" when the file names none, as kubectl's default
# context does. Other kinds keep the file's namespace, or none: a custom resource's scope is not known
# offline.
NAMESPACED = frozenset({
    "Binding", "ConfigMap", "ControllerRevision", "CronJob", "DaemonSet", "Deployment", "Endpoints",
    "EndpointSlice", "Event", "HorizontalPodAutoscaler", "Ingress", "Job", "Lease", "LimitRange",
    "NetworkPolicy", "PersistentVolumeClaim", "Pod", "PodDisruptionBudget", "PodTemplate", "ReplicaSet",
    "ReplicationController", "ResourceQuota", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount",
    "StatefulSet"})


# -- --objects -------------------------------------------------------------------------------------------
def _kind(kind: str, api_version: str) -> str:
    return f"{kind} ({api_version})" if api_version else kind


def load_files(host, files: Sequence[Tuple[str, List[dict]]]) -> None:
    """Fill ``host``'s caches from ``files`` (``(path, objects)`` pairs) and warn about what they
    cannot serve: objects of a kind no plugin watches (dropped), and watched kinds no file holds
    (empty caches). Warnings, not errors: such files are often whole directories of manifests, and a
    plugin's other caches may not matter to what is being tried."""
    watched: Dict[Tuple[str, str], list] = {}
    for watch in host.watches.values():
        watched.setdefault((watch.group, watch.kind), []).append(watch)
    given = set()
    dropped: Dict[Tuple[str, str, str], int] = {}
    for path, objects in files:
        for number, obj in enumerate(objects, 1):
            kind, api_version = obj.get("kind"), obj.get("apiVersion") or ""
            if not kind or not isinstance(kind, str):
                raise ValueError(f"{path}: object {number} has no kind; is it a Kubernetes object?")
            key = (api_version.rpartition("/")[0], kind)
            given.add(key)
            if key not in watched:
                dropped[(path, api_version, kind)] = dropped.get((path, api_version, kind), 0) + 1
    host.load_objects([obj for _, objects in files for obj in objects])
    kinds = sorted({_kind(k, ws[0].api_version) for (g, k), ws in watched.items()})
    for (path, api_version, kind), count in dropped.items():
        log.warning("%s: %d %s object%s not loaded: no plugin watches that kind%s; watched: %s", path, count,
                    _kind(kind, api_version), "" if count == 1 else "s",
                    _did_you_mean(kind, watched), ", ".join(kinds) or "none")
    if not files:  # no files: empty caches are what was asked for
        return
    for (group, kind), watches in sorted(watched.items()):
        if (group, kind) in given:
            continue
        for plugin in sorted({w.plugin for w in watches}):
            names = sorted(w.name for w in watches if w.plugin == plugin)
            log.warning("plugin %s watches %s but the --objects files hold none; its cache%s %s %s empty", plugin,
                        _kind(kind, watches[0].api_version), "s" if len(names) > 1 else "",
                        ", ".join(names), "are" if len(names) > 1 else "is")


def _did_you_mean(kind: str, watched: Dict[Tuple[str, str], list]) -> str:
    """A watched kind the object's was likely meant to be: the same kind in another API group, or a
    kind spelt alike (a typo, another case, a plural)."""
    same = [ws[0] for (g, k), ws in watched.items() if k == kind]
    if not same:
        lowered = {k.lower(): ws[0] for (g, k), ws in watched.items()}
        same = [lowered[k] for k in difflib.get_close_matches(kind.lower(), lowered, n=1, cutoff=0.8)]
    return f" (did you mean {_kind(same[0].kind, same[0].api_version)}?)" if same else ""


# -- admission-host review -------------------------------------------------------------------------------
def _generated_name(prefix: str) -> str:
    """A name as the API server generates one from ``generateName``."""
    return prefix + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def _user(username: str) -> dict:
    if username.startswith("system:serviceaccount:"):  # the groups a service account's token carries
        namespace = username.split(":")[2]
        return {"username": username,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]}
    return {"username": username, "groups": ["system:authenticated"]}


def _as_sent(obj: dict, path: str, exists: bool) -> dict:
    """The object as the API server holds it when it calls webhooks: in its namespace and, for its
    creation, with no creation time yet. Its type's defaults are not filled in."""
    obj = copy.deepcopy(obj)
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: metadata is not an object")
    if obj["kind"] in NAMESPACED and not meta.get("namespace"):
        meta["namespace"] = "default"
    if not exists:
        meta.setdefault("creationTimestamp", None)
    return obj


def binding(pod: dict, node: str) -> dict:
    """The Binding the scheduler creates to bind ``pod`` to ``node``."""
    meta = pod["metadata"]
    name = meta.get("name") or _generated_name(meta.get("generateName") or "")
    bound = {"name": name, "namespace": meta["namespace"]}
    if meta.get("uid"):
        bound["uid"] = meta["uid"]
    bound["creationTimestamp"] = None
    return {"kind": "Binding", "apiVersion": "v1", "metadata": bound, "target": {"kind": "Node", "name": node}}


def server_review(obj: dict, path: str, *, operation: str = "CREATE", old: Optional[dict] = None,
                  old_path: str = "--old", node: Optional[str] = None, username: Optional[str] = None) -> dict:
    """The AdmissionReview (``admission.k8s.io/v1``) the API server sends its webhooks for
    ``operation`` on ``obj``, read from ``path`` (``old``, read from ``old_path``, is the object
    before an UPDATE); with ``node``, for the scheduler's binding of the pod ``obj`` to that node.
    ``ValueError`` when no such request can be made."""
    if obj.get("kind") == "AdmissionReview":
        raise ValueError(f"{path} is already an AdmissionReview (give the object it is about)")
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; operations are {', '.join(OPERATIONS)}")
    if old is not None and operation != "UPDATE":
        raise ValueError("--old is the object before an UPDATE: give --operation UPDATE")
    obj = _as_sent(obj, path, exists=operation != "CREATE")
    meta = obj["metadata"]
    if node is not None:
        if obj["kind"] != "Pod":
            raise ValueError(f"--binding binds a Pod; {path} holds a {obj['kind']}")
        obj = binding(obj, node)
    if obj["kind"] == "Binding" and operation != "CREATE":
        raise ValueError(f"a binding is only ever created (pods/binding CREATE): drop --operation {operation}")
    if operation != "CREATE" and not meta.get("name"):
        raise ValueError(f"{path}: {operation} needs the object's metadata.name")
    if old is not None:
        old = _as_sent(old, old_path, exists=True)
        if (old.get("apiVersion"), old["kind"]) != (obj.get("apiVersion"), obj["kind"]):
            raise ValueError(f"--old is a {old['kind']} ({old.get('apiVersion')}), the object a {obj['kind']} "
                             f"({obj.get('apiVersion')})")
    elif operation == "UPDATE":
        old = copy.deepcopy(obj)  # an update that changes nothing
    if username is None:
        username = SCHEDULER if obj["kind"] == "Binding" else USER
    review = build(obj, operation=operation, old_object=old)
    request = review["request"]
    if obj["kind"] == "Namespace":  # the API server files a namespace under itself
        request["namespace"] = meta.get("name", "")
    if operation == "DELETE":  # what is deleted is the old object; there is no new one
        request["object"], request["oldObject"] = None, obj
    request["userInfo"] = _user(username)
    for field in ("name", "namespace"):  # left out when empty, as the API server does
        if not request[field]:
            del request[field]
    return review
