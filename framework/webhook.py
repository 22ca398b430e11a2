"""The MutatingWebhookConfiguration the enabled mutators need: its rules and its matchConditions.

Mutators say what they want (``resources``, ``operations``, ``group``) and what they never want
(``skip``: names from :data:`SKIPS`). The rules are the union of what they want. A matchCondition
keeps requests from being sent at all, so it is rendered only where EVERY enabled mutator that could
see such a request skips it: enabling a plugin that wants DaemonSet pods drops the condition that
keeps them away, instead of leaving that plugin starved.

``admission-host webhook-config`` prints :func:`configuration`; ``serve`` with
``--webhook-configuration`` keeps the live configuration's matchConditions equal to
:func:`match_conditions` (framework/certs.py), on API servers that have them (1.28+).
"""

from __future__ import annotations

import difflib
import re
from typing import Dict, Iterable, List, NamedTuple, Tuple

OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
WEBHOOK_NAME = "admission-host.eci.aliyun.com"
NAME = "admission-host"  # the configuration's, the Service's, its namespace's, the pods' label
# Subresources whose object is not the Pod (a Binding, an Eviction): pod conditions pass them.
_NOT_THE_POD = ("binding", "eviction")


class Skip(NamedTuple):
    condition: str  # the matchCondition's name
    expression: str  # CEL: true for what may be sent
    meaning: str


def _pod_condition(excluded: str) -> str:
    # Anything that is not a Pod passes: a Binding, another resource, the null object of a DELETE.
    # (request.subResource is absent, not "", on a request without one: reading it would be an error.)
    return f'object == null || object.kind != "Pod" || {excluded}'


#: What a mutator may say it never wants (``Mutator(skip=...)``), in the order conditions are rendered.
SKIPS: Dict[str, Skip] = {
    "daemonset-pods": Skip(
        "not-a-daemonset-pod",
        _pod_condition('!has(object.metadata.ownerReferences) || '
                       '!object.metadata.ownerReferences.exists(r, r.kind == "DaemonSet")'),
        "pods owned by a DaemonSet"),
    "static-pods": Skip(
        "not-a-static-pod",
        _pod_condition('!has(object.metadata.annotations) || '
                       '!("kubernetes.io/config.source" in object.metadata.annotations && '
                       'object.metadata.annotations["kubernetes.io/config.source"] in ["file", "http"])'),
        "pods a kubelet runs from a file or a URL (annotation kubernetes.io/config.source: file or http)"),
    "mirror-pods": Skip(
        "not-a-mirror-pod",
        _pod_condition('!((has(object.metadata.annotations) && '
                       '"kubernetes.io/config.mirror" in object.metadata.annotations) || '
                       '(has(object.metadata.ownerReferences) && '
                       'object.metadata.ownerReferences.exists(r, r.kind == "Node")))'),
        "the API server's copies of a kubelet's static pods (annotation kubernetes.io/config.mirror, or "
        "owned by a Node)"),
    "pods-created-on-a-node": Skip(
        "not-created-on-a-node",
        _pod_condition('!has(object.spec.nodeName) || object.spec.nodeName == ""'),
        "pods created with spec.nodeName: they bypass the scheduler"),
}


def check_skip(mutator: str, skip: Tuple[str, ...]) -> None:
    """A name outside :data:`SKIPS` would silently skip nothing: refuse it with a hint."""
    for name in skip:
        if name not in SKIPS:
            close = difflib.get_close_matches(name, SKIPS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"mutator {mutator!r}: unknown skip {name!r}{hint}; known: {', '.join(SKIPS)}")


def may_see_pods(mutator) -> bool:
    """Whether the mutator may be sent a request whose object is a Pod (what SKIPS speak of)."""
    if mutator.group not in ("", "*") or not {"CREATE", "UPDATE", "*"} & set(mutator.operations):
        return False
    for resource in mutator.resources:
        name, _, sub = resource.partition("/")
        if name in ("pods", "*") and sub not in _NOT_THE_POD:
            return True
    return False


def match_conditions(mutators: Iterable) -> List[dict]:
    """The conditions every mutator that may see a Pod agrees on, in :data:`SKIPS`' order."""
    concerned = [m for m in mutators if may_see_pods(m)]
    return [{"name": skip.condition, "expression": skip.expression} for name, skip in SKIPS.items()
            if concerned and all(name in m.skip for m in concerned)]


def rules(mutators: Iterable) -> List[dict]:
    """One rule per API group and set of operations, covering every resource a mutator wants."""
    wanted: Dict[Tuple[str, str], set] = {}  # (group, resource) -> operations
    for m in mutators:
        for resource in m.resources:
            wanted.setdefault((m.group, resource), set()).update(m.operations)
    merged: Dict[Tuple[str, Tuple[str, ...]], List[str]] = {}
    for (group, resource), ops in sorted(wanted.items()):
        ops_key = ("*",) if "*" in ops else tuple(op for op in OPERATIONS if op in ops)
        merged.setdefault((group, ops_key), []).append(resource)
    # The core group has one version; matchPolicy Equivalent covers the others' conversions.
    return [{"apiGroups": [group], "apiVersions": ["v1"] if group == "" else ["*"], "operations": list(ops),
             "resources": resources, "scope": "*"} for (group, ops), resources in merged.items()]


def configuration(mutators: Iterable, *, name: str = NAME, service: str = NAME, namespace: str = NAME,
                  with_match_conditions: bool = True) -> dict:
    """The MutatingWebhookConfiguration for ``mutators``, as deploy/base/webhook.yaml has it for
    ECI-Profile's (a test keeps them equal). caBundle is left out: the host or cert-manager sets it."""
    mutators = list(mutators)
    hook = {
        "name": WEBHOOK_NAME,
        "clientConfig": {"service": {"name": service, "namespace": namespace, "path": "/mutate", "port": 443}},
        "rules": rules(mutators),
        "failurePolicy": "Ignore",  # the host's own bug or outage never blocks pod creation or scheduling
        "matchPolicy": "Equivalent",
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": 5,
        "admissionReviewVersions": ["v1", "v1beta1"],
        "reinvocationPolicy": "IfNeeded",
        # The host's own pods are never sent to it, so it can never block its own start.
        "objectSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "NotIn",
                                                 "values": [NAME]}]},
    }
    conditions = match_conditions(mutators)
    if with_match_conditions and conditions:
        hook["matchConditions"] = conditions
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": NAME}}, "webhooks": [hook]}


def serves_match_conditions(version: dict) -> bool:
    """Whether an API server (its ``GET /version``) has webhook matchConditions: 1.28 and later."""
    major, minor = (re.match(r"\d*", str(version.get(k) or "")).group() for k in ("major", "minor"))
    return bool(major and minor) and (int(major), int(minor)) >= (1, 28)
