"""Selectors: parsing and validation, the matching index, and priority resolution."""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from framework import InvalidSelector, LabelSelector

GROUP = "eci.aliyun.com"
KIND = "Selector"
POLICIES = ("fair", "normalNodeOnly", "normalNodePrefer", "virtualNodeOnly")
INT32 = (-(2 ** 31), 2 ** 31 - 1)

# Label and annotation syntax (k8s.io/apimachinery/pkg/util/validation): an invalid key or
# value in an effect would make the API server reject the very pod we patched.
_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_RE = re.compile(f"^{_NAME}$")
_LABEL_VALUE_RE = re.compile(f"^({_NAME})?$")


class InvalidSelectorSpec(ValueError):
    """Why a Selector is left out of matching."""


def check_qualified_name(key: str) -> Optional[str]:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return f"{key!r}: prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        return f"{key!r}: name part must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
    return None


def _string_map(value, where: str, label_values: bool) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSelectorSpec(f"{where} must be a map")
    out = {}
    for key, raw in value.items():
        if not isinstance(key, str):
            raise InvalidSelectorSpec(f"{where}: key {key!r} must be a string")
        if isinstance(raw, bool) or raw is None or not isinstance(raw, (str, int)):
            raise InvalidSelectorSpec(f"{where}[{key!r}] must be a string or an integer")
        problem = check_qualified_name(key)
        if problem:
            raise InvalidSelectorSpec(f"{where}: invalid key {problem}")
        text = str(raw)  # the seed writes pod-deletion-cost: -1000 unquoted; applied as a string
        if label_values and (len(text) > 63 or not _LABEL_VALUE_RE.match(text)):
            raise InvalidSelectorSpec(f"{where}[{key!r}]: {text!r} is not a valid label value")
        out[key] = text
    return out


@dataclasses.dataclass(frozen=True)
class Selector:
    name: str
    policy: str
    priority: int = 0
    namespace_selector: Optional[LabelSelector] = None  # None: no constraint on the namespace
    object_selector: Optional[LabelSelector] = None  # None: no constraint on the pod
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    generation: int = 0

    @property
    def sort_key(self) -> tuple:
        """Highest priority first; ties go to the name that sorts first."""
        return (-self.priority, self.name)

    def matches(self, pod_labels: Mapping[str, str], namespace_labels: Mapping[str, str]) -> bool:
        return ((self.object_selector is None or self.object_selector.matches(pod_labels))
                and (self.namespace_selector is None or self.namespace_selector.matches(namespace_labels)))

    def explain(self, pod_labels: Mapping[str, str], namespace_labels: Mapping[str, str]) -> Optional[str]:
        """``None`` when it matches, else which side failed and why."""
        if self.object_selector is not None:
            why = self.object_selector.explain(pod_labels)
            if why:
                return f"objectLabels: pod {why}"
        if self.namespace_selector is not None:
            why = self.namespace_selector.explain(namespace_labels)
            if why:
                return f"namespaceLabels: namespace {why}"
        return None


def parse(obj: Mapping, known_policies: Iterable[str] = POLICIES) -> Selector:
    """Compile a Selector object; raise :class:`InvalidSelectorSpec` saying what is wrong."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidSelectorSpec("spec is missing")
    policy = spec.get("policy")
    if not isinstance(policy, Mapping) or len(policy) != 1:
        raise InvalidSelectorSpec(f"spec.policy must have exactly one of {', '.join(known_policies)}")
    (policy_name, policy_value), = policy.items()
    if policy_name not in known_policies:
        raise InvalidSelectorSpec(f"spec.policy: unknown policy {policy_name!r}; known: {', '.join(known_policies)}")
    if policy_value is not None and not isinstance(policy_value, Mapping):
        raise InvalidSelectorSpec(f"spec.policy.{policy_name} must be an object ({{}})")
    priority = spec.get("priority", 0)
    if priority is None:
        priority = 0
    if isinstance(priority, bool) or not isinstance(priority, int) or not INT32[0] <= priority <= INT32[1]:
        raise InvalidSelectorSpec(f"spec.priority must be an int32, got {priority!r}")
    try:
        ns_sel = None if spec.get("namespaceLabels") is None else LabelSelector.parse(spec["namespaceLabels"], "spec.namespaceLabels")
        obj_sel = None if spec.get("objectLabels") is None else LabelSelector.parse(spec["objectLabels"], "spec.objectLabels")
    except InvalidSelector as exc:
        raise InvalidSelectorSpec(str(exc)) from exc
    effect = spec.get("effect") or {}
    if not isinstance(effect, Mapping):
        raise InvalidSelectorSpec("spec.effect must be an object")
    return Selector(
        name=name, policy=policy_name, priority=priority, namespace_selector=ns_sel, object_selector=obj_sel,
        annotations=_string_map(effect.get("annotations"), "spec.effect.annotations", label_values=False),
        labels=_string_map(effect.get("labels"), "spec.effect.labels", label_values=True),
        generation=meta.get("generation") or 0,
    )


# -- the index ---------------------------------------------------------------------------------
# Each Selector is filed under one "anchor": a label any matching pod (or its namespace) must
# carry. A request then looks up only the anchors its own labels name, so the cost follows the
# number of labels on the pod, not the number of Selectors.
OBJECT_INDEX = "object-anchor"
NAMESPACE_INDEX = "namespace-anchor"
UNANCHORED = "*"


def _anchors(selector: Optional[LabelSelector]) -> List[str]:
    """Index values of a LabelSelector: ``k=v`` (any of them) or ``k`` (key must exist)."""
    if selector is None:
        return []
    best: Optional[List[str]] = None
    for key, value in selector.match_labels.items():
        return [f"{key}={value}"]
    for key, op, values in selector.expressions:
        if op == "In":
            candidate = [f"{key}={v}" for v in sorted(values)]
            if best is None or len(candidate) < len(best):
                best = candidate
        elif op == "Exists" and best is None:
            best = [key]
    return best or []


def index_keys(entry: Mapping) -> Tuple[Dict[str, List[str]], bool]:
    """Where a cached Selector entry is filed: ``({index: values}, unanchored)``."""
    sel: Optional[Selector] = entry.get("selector")
    if sel is None:
        return {}, False
    obj = _anchors(sel.object_selector)
    if obj:
        return {OBJECT_INDEX: obj}, False
    ns = _anchors(sel.namespace_selector)
    if ns:
        return {NAMESPACE_INDEX: ns}, False
    return {}, True


def object_anchor(entry: Mapping) -> List[str]:
    keys, unanchored = index_keys(entry)
    return keys.get(OBJECT_INDEX, []) + ([UNANCHORED] if unanchored else [])


def namespace_anchor(entry: Mapping) -> List[str]:
    return index_keys(entry)[0].get(NAMESPACE_INDEX, [])


def lookup_values(labels: Mapping[str, str]) -> List[str]:
    """Index values a set of labels can hit."""
    out = []
    for key, value in labels.items():
        out.append(f"{key}={value}")
        out.append(key)
    return out


def candidates(store, pod_labels: Mapping[str, str], namespace_labels: Mapping[str, str]) -> List[Selector]:
    """Selectors that might match (a superset), in resolution order."""
    values = lookup_values(pod_labels)
    values.append(UNANCHORED)
    entries = store.by_index_any(OBJECT_INDEX, values)
    if namespace_labels:
        entries += store.by_index_any(NAMESPACE_INDEX, lookup_values(namespace_labels))
    if not entries:
        return []
    found: Dict[str, Selector] = {entry["metadata"]["name"]: entry["selector"] for entry in entries}
    return sorted(found.values(), key=lambda s: s.sort_key)
