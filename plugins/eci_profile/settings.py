"""The plugin's options (``plugins: {eci_profile: {...}}`` in the host config file)."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Tuple

from plugins.eci_profile.selectors import InvalidSelectorSpec, parse_duration
from plugins.eci_profile.timing import DEFAULT_AUTOSCALER_RULES, MEANINGS, AutoscalerRule

DEFAULT_VIRTUAL_NODE_LABELS = {"k8s.aliyun.com/vnode": "true"}
DEFAULT_VIRTUAL_NODE_TOLERATIONS = [
    {"key": "k8s.aliyun.com/vnode", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
]
TOLERATION_OPERATORS = ("Equal", "Exists")
TAINT_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
OPTIONS = ("virtualNodeLabels", "virtualNodeTolerations", "auditAnnotation", "events", "autoscalerEvents",
           "defaultMaxWait")


def normalize_toleration(t: Mapping[str, Any]) -> Tuple:
    """Two tolerations are the same when these agree (an absent operator means Equal)."""
    return (t.get("key") or "", t.get("operator") or "Equal", t.get("value") or "", t.get("effect") or "",
            t.get("tolerationSeconds"))


@dataclasses.dataclass(frozen=True)
class Settings:
    virtual_node_labels: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_VIRTUAL_NODE_LABELS))
    virtual_node_tolerations: Tuple[Mapping[str, Any], ...] = tuple(DEFAULT_VIRTUAL_NODE_TOLERATIONS)
    audit_annotation: str = "selector"
    events: bool = True
    # What autoscalers' Events on a pending pod mean (cluster-autoscaler's and Karpenter's by default).
    autoscaler_rules: Tuple[AutoscalerRule, ...] = DEFAULT_AUTOSCALER_RULES
    default_max_wait: float = 600.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "Settings":
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
        labels = options.get("virtualNodeLabels", DEFAULT_VIRTUAL_NODE_LABELS)
        if not isinstance(labels, Mapping) or not labels:
            raise ValueError("virtualNodeLabels must be a non-empty map of node labels")
        labels = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in labels.items()}
        tolerations = options.get("virtualNodeTolerations", DEFAULT_VIRTUAL_NODE_TOLERATIONS)
        if not isinstance(tolerations, list):
            raise ValueError("virtualNodeTolerations must be a list of tolerations")
        checked: List[Dict[str, Any]] = []
        for i, t in enumerate(tolerations):
            if not isinstance(t, Mapping):
                raise ValueError(f"virtualNodeTolerations[{i}] must be a toleration object")
            t = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in t.items()}
            op = t.get("operator", "Equal")
            if op not in TOLERATION_OPERATORS:
                raise ValueError(f"virtualNodeTolerations[{i}].operator must be Equal or Exists, not {op!r}")
            if op == "Exists" and t.get("value"):
                raise ValueError(f"virtualNodeTolerations[{i}]: operator Exists takes no value")
            if t.get("effect", "") not in TAINT_EFFECTS:
                raise ValueError(f"virtualNodeTolerations[{i}].effect must be one of NoSchedule, "
                                 f"PreferNoSchedule, NoExecute")
            if "value" in t:
                t["value"] = str(t["value"])
            checked.append(t)
        try:
            max_wait = parse_duration(options.get("defaultMaxWait", "10m"), "defaultMaxWait")
        except InvalidSelectorSpec as exc:
            raise ValueError(str(exc)) from None
        return cls(virtual_node_labels=labels, virtual_node_tolerations=tuple(checked),
                   audit_annotation=str(options.get("auditAnnotation", "selector")),
                   events=bool(options.get("events", True)),
                   autoscaler_rules=_autoscaler_rules(options.get("autoscalerEvents")), default_max_wait=max_wait)

    def is_virtual_node(self, node_labels: Mapping[str, str]) -> bool:
        return all(node_labels.get(k) == v for k, v in self.virtual_node_labels.items())

    def missing_tolerations(self, tolerations) -> List[Dict[str, Any]]:
        have = {normalize_toleration(t) for t in tolerations or () if isinstance(t, Mapping)}
        return [dict(t) for t in self.virtual_node_tolerations if normalize_toleration(t) not in have]


def _autoscaler_rules(value) -> Tuple[AutoscalerRule, ...]:
    """``autoscalerEvents``: a list of ``{component, reason, means, message}``; replaces the defaults."""
    if value is None:
        return DEFAULT_AUTOSCALER_RULES
    if not isinstance(value, list):
        raise ValueError("autoscalerEvents must be a list of {component, reason, means[, message]}")
    rules = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not all(isinstance(item.get(k), str) and item.get(k)
                                                    for k in ("component", "reason", "means")):
            raise ValueError(f"autoscalerEvents[{i}] needs component, reason and means (strings)")
        if item["means"] not in MEANINGS:
            raise ValueError(f"autoscalerEvents[{i}].means must be one of {', '.join(MEANINGS)}")
        unknown = set(item) - {"component", "reason", "means", "message"}
        if unknown:
            raise ValueError(f"autoscalerEvents[{i}]: unknown key(s) {', '.join(sorted(unknown))}")
        rules.append(AutoscalerRule(item["component"], item["reason"], item["means"], str(item.get("message", ""))))
    return tuple(rules)
