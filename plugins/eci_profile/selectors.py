"""Selectors: parsing and validation, the matching index, and priority resolution."""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from framework import InvalidSelector, LabelSelector
from plugins.eci_profile import tiers as tiering
from plugins.eci_profile.tiers import Tier

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


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
SCALE_IN = ("VirtualFirst", "ReverseTiers", "None")
TIERS = "tiers"  # the policy name of a Selector with spec.tiers
CAP_ENFORCEMENT = ("Admission", "Evict")


def parse_duration(value, where: str) -> float:
    """``30s``, ``10m``, ``1h30m``, ``500ms`` in seconds (the CRD schema admits the same)."""
    if not isinstance(value, str) or not _DURATION_RE.match(value):
        raise InvalidSelectorSpec(f"{where} must be a duration such as 30s, 10m or 1h, not {value!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))


def format_duration(seconds: float) -> str:
    seconds = int(seconds) if float(seconds).is_integer() else seconds
    if isinstance(seconds, int) and seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if isinstance(seconds, int) and seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds:g}s"


def _int(value, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= INT32[1]:
        raise InvalidSelectorSpec(f"{where} must be an integer of at least {minimum}, not {value!r}")
    return value


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
    # normalNodePrefer's burst timing (seconds); None: the default
    burst_after: Optional[float] = None
    wait_for_autoscaler: bool = False
    max_wait: Optional[float] = None
    max_virtual_pods: Optional[int] = None  # None: no cap
    cap_enforcement: str = "Admission"  # Evict: the leader also evicts pods past the cap
    evict_from_normal_nodes: bool = False  # virtualNodeOnly: the leader evicts its pods found there
    scale_in: str = "None"
    drain_after: Optional[float] = None  # None: no drain-back
    drain_per_minute: int = 5
    #: where its pods may run, in order: spec.tiers, or the policy's preset (tiers.preset)
    tiers: Tuple[Tier, ...] = ()

    @property
    def tiered(self) -> bool:
        """Written with ``spec.tiers`` (not a policy)."""
        return self.policy == TIERS

    def deletion_cost(self, tier: int) -> Optional[str]:
        """The pod-deletion-cost a pod bound into tier ``tier`` gets (unless it has one), for
        scale-in in reverse tier order; None: none."""
        if self.scale_in == "ReverseTiers" and tier > 0:
            return str(-tiering.COST_STEP * tier)
        if self.scale_in == "VirtualFirst" and self.tiers[tier].virtual:
            return str(-tiering.COST_STEP)
        return None

    @property
    def burst_delay(self) -> float:
        """How long a pod stays Unschedulable before it bursts (without an autoscaler's word)."""
        if self.burst_after is not None:
            return self.burst_after
        return 30.0 if self.wait_for_autoscaler else 0.0

    def describe_policy(self) -> str:
        """The policy and its settings in a few words, for ``kubectl get selectors``."""
        parts = []
        if self.tiered:
            parts.append(" > ".join(t.name + (f" (max {t.max_pods})" if t.max_pods is not None else "")
                                    for t in self.tiers))
        if self.policy == "normalNodePrefer":
            if self.burst_delay:
                parts.append(f"after {format_duration(self.burst_delay)}")
            if self.wait_for_autoscaler:
                parts.append("wait for autoscaler" + (f" up to {format_duration(self.max_wait)}"
                                                      if self.max_wait is not None else ""))
        if self.evict_from_normal_nodes:
            parts.append("evict from normal nodes")
        if self.cap_enforcement == "Evict":
            parts.append("cap enforced by eviction")
        if self.scale_in == "VirtualFirst":
            parts.append("virtual first on scale-in")
        if self.scale_in == "ReverseTiers":
            parts.append("reverse tiers on scale-in")
        if self.drain_after is not None:
            parts.append(f"drain back after {format_duration(self.drain_after)}")
        return self.policy + (f" ({', '.join(parts)})" if parts else "")

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
    if spec.get("tiers") is not None:
        if policy is not None:
            raise InvalidSelectorSpec("spec.tiers and spec.policy are exclusive: the tiers say where its pods go")
        policy_name, policy_value = TIERS, None
    else:
        if not isinstance(policy, Mapping) or len(policy) != 1:
            raise InvalidSelectorSpec(f"spec.policy (or spec.tiers) must have exactly one of "
                                      f"{', '.join(known_policies)}")
        (policy_name, policy_value), = policy.items()
        if policy_name not in known_policies:
            raise InvalidSelectorSpec(f"spec.policy: unknown policy {policy_name!r}; known: "
                                      f"{', '.join(known_policies)}")
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
    burst: dict = {}
    if policy_name == "virtualNodeOnly" and policy_value:
        evict = policy_value.get("evictFromNormalNodes", False)
        if not isinstance(evict, bool):
            raise InvalidSelectorSpec("spec.policy.virtualNodeOnly.evictFromNormalNodes must be true or false")
        burst["evict_from_normal_nodes"] = evict
    if policy_name == "normalNodePrefer" and policy_value:
        where = "spec.policy.normalNodePrefer"
        if policy_value.get("burstAfter") is not None:
            burst["burst_after"] = parse_duration(policy_value["burstAfter"], f"{where}.burstAfter")
        wait = policy_value.get("waitForAutoscaler", False)
        if not isinstance(wait, bool):
            raise InvalidSelectorSpec(f"{where}.waitForAutoscaler must be true or false")
        burst["wait_for_autoscaler"] = wait
        if policy_value.get("maxWait") is not None:
            burst["max_wait"] = parse_duration(policy_value["maxWait"], f"{where}.maxWait")
    if spec.get("maxVirtualPods") is not None:
        if policy_name == TIERS:
            raise InvalidSelectorSpec("spec.maxVirtualPods does not go with spec.tiers: give the virtual tier maxPods")
        burst["max_virtual_pods"] = _int(spec["maxVirtualPods"], "spec.maxVirtualPods", 0)
    enforcement = spec.get("capEnforcement") or "Admission"
    if enforcement not in CAP_ENFORCEMENT:
        raise InvalidSelectorSpec(f"spec.capEnforcement must be Admission or Evict, not {enforcement!r}")
    if policy_name == TIERS:
        tiers = parse_tiers(spec["tiers"], name)
    else:
        tiers = tiering.preset(name, _policy_flags(known_policies, policy_name), burst)
    if enforcement == "Evict" and all(t.max_pods is None for t in tiers):
        raise InvalidSelectorSpec("spec.capEnforcement: Evict needs spec.maxVirtualPods (or a tier's maxPods)")
    burst["cap_enforcement"] = enforcement
    scale_in = spec.get("scaleIn") or ("ReverseTiers" if policy_name == TIERS else "None")
    if scale_in not in SCALE_IN:
        raise InvalidSelectorSpec(f"spec.scaleIn must be one of {', '.join(SCALE_IN)}, not {scale_in!r}")
    if (scale_in == "ReverseTiers") != (policy_name == TIERS) and scale_in != "None":
        raise InvalidSelectorSpec(f"spec.scaleIn: {scale_in} goes with " + ("a policy" if policy_name == TIERS
                                                                           else "spec.tiers"))
    drain = spec.get("drainBack")
    if drain is not None:
        if not isinstance(drain, Mapping) or "after" not in drain:
            raise InvalidSelectorSpec("spec.drainBack must be an object with after (and maxPerMinute)")
        burst["drain_after"] = parse_duration(drain["after"], "spec.drainBack.after")
        burst["drain_per_minute"] = _int(drain.get("maxPerMinute", 5), "spec.drainBack.maxPerMinute", 1)
    return Selector(
        name=name, policy=policy_name, priority=priority, namespace_selector=ns_sel, object_selector=obj_sel,
        annotations=_string_map(effect.get("annotations"), "spec.effect.annotations", label_values=False),
        labels=_string_map(effect.get("labels"), "spec.effect.labels", label_values=True),
        generation=meta.get("generation") or 0, scale_in=scale_in, tiers=tiers, **burst,
    )


def _policy_flags(known_policies, name: str):
    """The Policy object (its flags say what its tiers are): from the plugin's policies, or a built-in."""
    if isinstance(known_policies, Mapping):
        return known_policies[name]
    from plugins.eci_profile import policies

    return policies.BUILT_IN[name]


_TIER_KEYS = {"name", "nodeLabels", "tolerations", "virtualNodes", "maxPods", "burstAfter", "waitForAutoscaler",
              "maxWait"}


def parse_tiers(value, selector_name: str) -> Tuple[Tier, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= tiering.MAX_TIERS:
        raise InvalidSelectorSpec(f"spec.tiers must be a list of 1 to {tiering.MAX_TIERS} tiers")
    out = []
    for i, raw in enumerate(value):
        where = f"spec.tiers[{i}]"
        if not isinstance(raw, Mapping):
            raise InvalidSelectorSpec(f"{where} must be an object")
        unknown = set(raw) - _TIER_KEYS
        if unknown:
            raise InvalidSelectorSpec(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            name = tiering.check_name(raw.get("name"), where)
        except ValueError as exc:
            raise InvalidSelectorSpec(str(exc)) from None
        where = f"{where} ({name})"
        virtual = raw.get("virtualNodes", False)
        if not isinstance(virtual, bool):
            raise InvalidSelectorSpec(f"{where}.virtualNodes must be true or false")
        tolerations = raw.get("tolerations") or []
        if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) and (t.get("key") or
                                                                                    t.get("operator") == "Exists")
                                                         for t in tolerations):
            raise InvalidSelectorSpec(f"{where}.tolerations must be a list of tolerations (each with a key, or "
                                      "operator Exists)")
        fields: dict = {}
        if raw.get("maxPods") is not None:
            fields["max_pods"] = _int(raw["maxPods"], f"{where}.maxPods", 0)
        if raw.get("burstAfter") is not None:
            fields["burst_after"] = parse_duration(raw["burstAfter"], f"{where}.burstAfter")
        wait = raw.get("waitForAutoscaler", False)
        if not isinstance(wait, bool):
            raise InvalidSelectorSpec(f"{where}.waitForAutoscaler must be true or false")
        if raw.get("maxWait") is not None:
            fields["max_wait"] = parse_duration(raw["maxWait"], f"{where}.maxWait")
        if i == len(value) - 1 and (fields.keys() - {"max_pods"} or wait):
            raise InvalidSelectorSpec(f"{where}: burstAfter, waitForAutoscaler and maxWait say when pods move on "
                                      "to the next tier; the last tier has none")
        out.append(Tier(name=name, node_labels=_string_map(raw.get("nodeLabels"), f"{where}.nodeLabels",
                                                           label_values=True),
                        tolerations=tuple({str(k): (str(v) if k == "value" else v) for k, v in t.items()}
                                          for t in tolerations),
                        virtual=virtual, wait_for_autoscaler=wait, cap_key=tiering.cap_key(selector_name, name),
                        **fields))
    try:
        tiering.check(out)
    except ValueError as exc:
        raise InvalidSelectorSpec(str(exc)) from None
    return tuple(out)


# -- the index ---------------------------------------------------------------------------------
# Each Selector is filed under one "anchor": a label any matching pod (or its namespace) must
# carry. A request then looks up only the anchors its own labels name, so the cost follows the
# number of labels on the pod, not the number of Selectors.
OBJECT_INDEX = "object-anchor"
NAMESPACE_INDEX = "namespace-anchor"
UNANCHORED = "*"
# The label keys of the anchors above: a pod's or namespace's label whose key no Selector is
# anchored on is passed over without making the index values it could hit.
OBJECT_KEY_INDEX = "object-anchor-key"
NAMESPACE_KEY_INDEX = "namespace-anchor-key"


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


def object_anchor_keys(entry: Mapping) -> List[str]:
    return _keys_of(index_keys(entry)[0].get(OBJECT_INDEX, []))


def namespace_anchor_keys(entry: Mapping) -> List[str]:
    return _keys_of(namespace_anchor(entry))


def _keys_of(anchors: List[str]) -> List[str]:
    return sorted({anchor.partition("=")[0] for anchor in anchors})


def lookup_values(labels: Mapping[str, str], anchored) -> List[str]:
    """Index values a set of labels can hit, ``anchored`` being the label keys anchors have."""
    out = []
    for key, value in labels.items():
        if key in anchored:
            out.append(f"{key}={value}")
            out.append(key)
    return out


def candidates(store, pod_labels: Mapping[str, str], namespace_labels: Mapping[str, str]) -> List[Selector]:
    """Selectors that might match (a superset), in resolution order."""
    values = lookup_values(pod_labels, store.indexed(OBJECT_KEY_INDEX))
    values.append(UNANCHORED)
    entries = store.by_index_any(OBJECT_INDEX, values)
    if namespace_labels:
        entries += store.by_index_any(NAMESPACE_INDEX, lookup_values(namespace_labels,
                                                                     store.indexed(NAMESPACE_KEY_INDEX)))
    if not entries:
        return []
    found: Dict[str, Selector] = {entry["metadata"]["name"]: entry["selector"] for entry in entries}
    return sorted(found.values(), key=lambda s: s.sort_key)
