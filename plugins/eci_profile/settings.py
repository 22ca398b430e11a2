"""The plugin's options (``plugins: {eci_profile: {...}}`` in the host config file)."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from plugins.eci_profile.selectors import InvalidSelectorSpec, parse_duration
from plugins.eci_profile.tiers import missing
from plugins.eci_profile.timing import DEFAULT_AUTOSCALER_RULES, MEANINGS, AutoscalerRule

DEFAULT_VIRTUAL_NODE_LABELS = {"k8s.aliyun.com/vnode": "true"}
DEFAULT_VIRTUAL_NODE_TOLERATIONS = [
    {"key": "k8s.aliyun.com/vnode", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
]
TOLERATION_OPERATORS = ("Equal", "Exists")
TAINT_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")


def _option(default=dataclasses.MISSING, factory=dataclasses.MISSING, help: str = ""):
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help})


@dataclasses.dataclass
class Options:
    """The options as written in the config file (types checked by the host); :class:`Settings`
    is what they mean."""

    virtual_node_labels: Dict[str, Union[str, int, bool]] = _option(
        factory=lambda: dict(DEFAULT_VIRTUAL_NODE_LABELS), help="a node with all these labels is virtual")
    virtual_node_tolerations: List[Dict[str, Any]] = _option(
        factory=lambda: [dict(t) for t in DEFAULT_VIRTUAL_NODE_TOLERATIONS],
        help="what fair, virtualNodeOnly and normalNodePrefer add to a pod")
    audit_annotation: str = _option("selector", help="key of the audit annotation naming the winning Selector")
    events: bool = _option(True, help="record Events (burst, held burst, cap reached, drain-back, invalid Selector)")
    autoscaler_events: Optional[List[Dict[str, str]]] = _option(
        None, help="what Events on a pending pod mean: [{component, reason, means, message}]; "
                   "default: cluster-autoscaler's and Karpenter's")
    default_max_wait: str = _option("10m", help="maxWait of Selectors that wait for an autoscaler and name none")
    label_sweep_interval: str = _option(
        "1m", help="how often pods on virtual nodes are checked for their Selector's labels (lost with a "
                   "replica that stopped before sending them, or never given while the webhook was "
                   "unreachable); 0s turns the check off")

    full_tier_for: str = _option(
        "10s", help="how long after the scheduler found a workload's pod Unschedulable in a tier that moves on "
                    "at once its next pods are let into the next tier at creation (preferring the earlier), "
                    "skipping a try that would fail; 0s turns it off")

    def __post_init__(self):
        Settings.from_options(self)  # a value that means nothing is reported as the host checks options


@dataclasses.dataclass(frozen=True)
class Settings:
    virtual_node_labels: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_VIRTUAL_NODE_LABELS))
    virtual_node_tolerations: Tuple[Mapping[str, Any], ...] = tuple(DEFAULT_VIRTUAL_NODE_TOLERATIONS)
    audit_annotation: str = "selector"
    events: bool = True
    # What autoscalers' Events on a pending pod mean (cluster-autoscaler's and Karpenter's by default).
    autoscaler_rules: Tuple[AutoscalerRule, ...] = DEFAULT_AUTOSCALER_RULES
    default_max_wait: float = 600.0
    label_sweep_interval: float = 60.0
    full_tier_for: float = 10.0

    @classmethod
    def from_options(cls, options: Options) -> "Settings":
        labels = options.virtual_node_labels
        if not labels:
            raise ValueError("virtualNodeLabels must be a non-empty map of node labels")
        labels = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in labels.items()}
        checked: List[Dict[str, Any]] = []
        for i, t in enumerate(options.virtual_node_tolerations):
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
            max_wait = parse_duration(options.default_max_wait, "defaultMaxWait")
            sweep = parse_duration(options.label_sweep_interval, "labelSweepInterval")
            full_tier_for = parse_duration(options.full_tier_for, "fullTierFor")
        except InvalidSelectorSpec as exc:
            raise ValueError(str(exc)) from None
        return cls(virtual_node_labels=labels, virtual_node_tolerations=tuple(checked),
                   audit_annotation=options.audit_annotation, events=options.events,
                   autoscaler_rules=_autoscaler_rules(options.autoscaler_events), default_max_wait=max_wait,
                   label_sweep_interval=sweep, full_tier_for=full_tier_for)

    def is_virtual_node(self, node_labels: Mapping[str, str]) -> bool:
        return all(node_labels.get(k) == v for k, v in self.virtual_node_labels.items())

    def missing_tolerations(self, tolerations) -> List[Dict[str, Any]]:
        return missing(tolerations, self.virtual_node_tolerations)


def _autoscaler_rules(value) -> Tuple[AutoscalerRule, ...]:
    """``autoscalerEvents``: a list of ``{component, reason, means, message}``; replaces the defaults."""
    if value is None:
        return DEFAULT_AUTOSCALER_RULES
    rules = []
    for i, item in enumerate(value):
        if not all(item.get(k) for k in ("component", "reason", "means")):
            raise ValueError(f"autoscalerEvents[{i}] needs component, reason and means (strings)")
        if item["means"] not in MEANINGS:
            raise ValueError(f"autoscalerEvents[{i}].means must be one of {', '.join(MEANINGS)}")
        unknown = set(item) - {"component", "reason", "means", "message"}
        if unknown:
            raise ValueError(f"autoscalerEvents[{i}]: unknown key(s) {', '.join(sorted(unknown))}")
        rules.append(AutoscalerRule(item["component"], item["reason"], item["means"], str(item.get("message", ""))))
    return tuple(rules)
