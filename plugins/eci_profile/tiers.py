"""Tiers: the ordered places where a Selector's pods may run, and how a pod moves from one to the next.

Every Selector has tiers: ``spec.tiers`` as written, or its policy's preset (:func:`preset`):

| policy           | tiers                                                       |
|------------------|-------------------------------------------------------------|
| normalNodePrefer | normal (moves on by burstAfter/waitForAutoscaler/maxWait), virtual |
| fair             | normal, virtual (opened at creation: both at once)          |
| normalNodeOnly   | normal (never moves on), virtual (only if something else opened it) |
| virtualNodeOnly  | virtual                                                     |

How a pod moves, and what is a fence and what a preference (docs/selectors.md says why):

- A tier is **fenced** when tolerations open it (a tainted pool) or it is the virtual nodes. Adding
  tolerations to a pending pod is allowed at any time, so fenced tiers open one at a time, in
  order, when the pod is Unschedulable where it may go now (the tier's own rules say when), and a
  full tier (``maxPods``) is passed over. The scheduler cannot use a fenced tier before that: a
  hard ordering.
- The **unfenced** tiers come first (a Selector with an unfenced tier after a fenced one is
  refused: nothing could hold pods off it) and are all open from creation; their order is a
  preference (preferred node affinity, weights falling by tier), which the scheduler weighs with
  its other scores. ``maxPods`` needs a fence.
- At creation the pod is kept to the union of its tiers' nodes (merged into ``nodeSelector`` when
  that is one set of labels, else required node affinity), since node affinity cannot change later.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

MAX_TIERS = 8
TIER_LABEL = "eci.aliyun.com/tier"
# Scale-in order: a pod in tier i (i > 0) gets pod-deletion-cost -1000 * i, unless it has one.
COST_STEP = 1000
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class Tier:
    name: str
    #: a node of the tier has all these labels (none: any node of its kind)
    node_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: added to a pod to let it onto the tier's nodes (a virtual tier adds the virtual-node ones too)
    tolerations: Tuple[Mapping[str, Any], ...] = ()
    virtual: bool = False
    max_pods: Optional[int] = None
    # When a pod Unschedulable in this tier (and the earlier ones) moves on to the next.
    burst_after: Optional[float] = None
    wait_for_autoscaler: bool = False
    max_wait: Optional[float] = None
    #: whether its pods ever move on (normalNodeOnly's do not)
    moves_on: bool = True
    #: opened at creation although fenced (fair's virtual nodes)
    open_at_create: bool = False
    #: what the tier's pods are counted by: the Selector's name for a preset's virtual nodes (as
    #: before tiers: ``eci.aliyun.com/selector`` alone), else ``SELECTOR/TIER``
    cap_key: str = ""

    @property
    def burst_delay(self) -> float:
        """How long a pod stays Unschedulable here before it moves on (without an autoscaler's word)."""
        if self.burst_after is not None:
            return self.burst_after
        return 30.0 if self.wait_for_autoscaler else 0.0

    @property
    def moves_on_at_once(self) -> bool:
        """Its pods move on as soon as the scheduler finds them Unschedulable here (no burstAfter, no
        autoscaler to wait for): what lets their siblings skip the try (full_tiers.py)."""
        return self.moves_on and self.burst_delay == 0 and not self.wait_for_autoscaler

    @property
    def fenced(self) -> bool:
        return self.virtual or bool(self.tolerations)

    @property
    def labelled(self) -> bool:
        """Whether its pods carry ``eci.aliyun.com/tier`` (the tiers of ``spec.tiers``)."""
        return "/" in self.cap_key

    @property
    def counted(self) -> bool:
        """Whether its pods are counted (labelled): every tier of ``spec.tiers``, a policy's virtual nodes."""
        return self.labelled or self.virtual


def cap_key(selector: str, tier: str) -> str:
    return f"{selector}/{tier}"


def record_suffix(key: str) -> str:
    """A cap key as a ConfigMap name part: the Selector's name, or a hash for a tier's key."""
    return key if "/" not in key else "t-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def preset(selector_name: str, policy, burst: Mapping[str, Any]) -> Tuple[Tier, ...]:
    """The tiers a policy means, from its flags (a third party's policies get tiers too)."""
    virtual = Tier("virtual", virtual=True, max_pods=burst.get("max_virtual_pods"), cap_key=selector_name,
                   open_at_create=bool(policy.tolerate_at_create and not policy.effect_at_create))
    if policy.effect_at_create:
        return (virtual,)
    normal = Tier("normal", moves_on=bool(policy.burst_when_unschedulable),
                  **{k: burst[k] for k in ("burst_after", "wait_for_autoscaler", "max_wait") if k in burst})
    return normal, virtual


def check(tiers: Sequence[Tier]) -> None:
    """What the host refuses in ``spec.tiers`` (ValueError saying why)."""
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise ValueError("spec.tiers: tier names must be unique")
    fenced_seen = None
    for i, tier in enumerate(tiers):
        where = f"spec.tiers[{i}] ({tier.name})"
        if tier.fenced:
            fenced_seen = fenced_seen or tier.name
        elif fenced_seen:
            raise ValueError(f"{where}: no toleration opens it, so it is open from creation and cannot come after "
                             f"{fenced_seen}, which must be opened; put the tiers no taint keeps pods off first")
        if tier.max_pods is not None and not tier.fenced:
            raise ValueError(f"{where}: maxPods needs a tier that tolerations open (a tainted pool) or the virtual "
                             "nodes: nothing could keep pods off an untainted pool once it is full")
    if sum(1 for t in tiers if t.virtual) > 1:
        raise ValueError("spec.tiers: at most one tier may be the virtual nodes")


def node_tier(tiers: Sequence[Tier], node_labels: Mapping[str, str], is_virtual: bool) -> Optional[int]:
    """The index of the first tier whose nodes include this node (None: none does)."""
    for i, tier in enumerate(tiers):
        if tier.virtual == is_virtual and all(node_labels.get(k) == v for k, v in tier.node_labels.items()):
            return i
    return None


def opening_tolerations(tier: Tier, settings) -> List[Mapping[str, Any]]:
    return list(settings.virtual_node_tolerations if tier.virtual else ()) + list(tier.tolerations)


def normalize_toleration(t: Mapping[str, Any]) -> Tuple:
    """Two tolerations are the same when these agree (an absent operator means Equal)."""
    return (t.get("key") or "", t.get("operator") or "Equal", t.get("value") or "", t.get("effect") or "",
            t.get("tolerationSeconds"))


def missing(tolerations: Sequence[Mapping[str, Any]], wanted: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Those of ``wanted`` that ``tolerations`` lacks, once each."""
    have = {normalize_toleration(t) for t in tolerations or () if isinstance(t, dict)}  # (cached: dict subclasses)
    out, seen = [], set()
    for t in wanted:
        key = normalize_toleration(t)
        if key not in have and key not in seen:
            seen.add(key)
            out.append(dict(t))
    return out


def is_open(tier: Tier, tolerations: Sequence[Mapping[str, Any]], settings) -> bool:
    """Whether a pod with these tolerations may use the tier's nodes."""
    return not missing(tolerations, opening_tolerations(tier, settings))


def open_at_create(tiers: Sequence[Tier]) -> List[int]:
    """The tiers a new pod may use: the unfenced ones, the first, and any opened at creation."""
    return [i for i, t in enumerate(tiers) if i == 0 or not t.fenced or t.open_at_create]


def furthest(tiers: Sequence[Tier], tolerations: Sequence[Mapping[str, Any]], settings) -> int:
    """The last tier the pod may use now: where its moving on starts from."""
    last = 0
    for i, tier in enumerate(tiers):
        if (not tier.fenced and i == last + 1) or (tier.fenced and is_open(tier, tolerations, settings)):
            last = i
    return last


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _DNS_LABEL.match(name):
        raise ValueError(f"{where}.name must be a DNS label (lowercase letters, digits and '-', up to 63), "
                         f"not {name!r}")
    return name


def fence(tiers: Sequence[Tier], settings) -> Optional[List[Dict[str, str]]]:
    """Label sets of which a node must have one (None: any node). A virtual tier's set is the
    virtual-node labels and its own."""
    sets = []
    for tier in tiers:
        labels = {**(settings.virtual_node_labels if tier.virtual else {}), **tier.node_labels}
        if not labels:
            return None  # a tier of any normal node: no fence
        sets.append(labels)
    unique = []
    for labels in sets:
        if labels not in unique:
            unique.append(labels)
    return unique


def preference(tiers: Sequence[Tier], open_tiers: Sequence[int]) -> List[Dict[str, Any]]:
    """Preferred node affinity terms ordering the unfenced tiers open at creation (earlier first);
    nothing when fewer than two of them name their nodes."""
    ranked = [tiers[i] for i in open_tiers if not tiers[i].fenced and tiers[i].node_labels]
    if len(ranked) < 2:
        return []
    return [{"weight": max(1, 100 - 10 * rank), "preference": {"matchExpressions": [
        {"key": k, "operator": "In", "values": [v]} for k, v in sorted(tier.node_labels.items())]}}
        for rank, tier in enumerate(ranked)]


def prefer_before(tiers: Sequence[Tier], upto: int, settings) -> List[Dict[str, Any]]:
    """Preferred node affinity terms for the tiers up to ``upto`` (earlier first) over the later
    ones a pod was let into early: a tier's node labels, or for a tier of any normal node, the
    virtual-node labels' absence (NotIn matches a node without the label too)."""
    terms = []
    for rank, tier in enumerate(tiers[:upto + 1]):
        if tier.virtual:
            continue
        exprs = _expressions(tier.node_labels) + [{"key": k, "operator": "NotIn", "values": [v]}
                                                  for k, v in sorted(settings.virtual_node_labels.items())]
        terms.append({"weight": max(1, 100 - 10 * rank), "preference": {"matchExpressions": exprs}})
    return terms


def _expressions(labels: Mapping[str, str]) -> List[Dict[str, Any]]:
    return [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(labels.items())]


def place_at_create(tiers: Sequence[Tier], pod: dict, settings, warn) -> List[str]:
    """What a new pod gets so that it goes where its tiers say: the tolerations of the tiers open
    at creation, the fence to the tiers' nodes, the preference among the unfenced tiers. Returns
    short descriptions of the changes; ``warn`` is told of a nodeSelector value replaced."""
    spec = pod.setdefault("spec", {})
    opened = open_at_create(tiers)
    wanted = [t for i in opened for t in opening_tolerations(tiers[i], settings)]
    added = missing(spec.get("tolerations"), wanted)
    if added:
        spec["tolerations"] = list(spec.get("tolerations") or ()) + added
    changes = [f"toleration {t.get('key', '')}" for t in added]
    sets = fence(tiers, settings)
    if sets and len(sets) == 1:
        changes += _merge_node_selector(spec, sets[0], warn)
    elif sets:
        changes += _require_any(spec, sets)
    terms = preference(tiers, opened)
    if terms:
        affinity = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
        preferred = affinity.setdefault("preferredDuringSchedulingIgnoredDuringExecution", [])
        new = [t for t in terms if t not in preferred]
        preferred.extend(new)
        changes += ["preferred node affinity"] if new else []
    return changes


def _merge_node_selector(spec: dict, labels: Mapping[str, str], warn) -> List[str]:
    node_selector = spec.get("nodeSelector")
    if not isinstance(node_selector, dict):
        node_selector = spec["nodeSelector"] = {}
    changed = []
    for key, value in labels.items():
        have = node_selector.get(key)
        if have == value:
            continue
        if have is not None:
            warn(f"nodeSelector {key}={have} replaced by {key}={value}")
        node_selector[key] = value  # merged: the pod's other nodeSelector keys stay
        changed.append(f"nodeSelector {key}")
    return changed


def _require_any(spec: dict, sets: List[Dict[str, str]]) -> List[str]:
    """Required node affinity: the pod's own terms (any of them) and one of ``sets``. Node
    affinity terms are ORed and their expressions ANDed, so each own term is joined with each set."""
    required = (spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
                .setdefault("requiredDuringSchedulingIgnoredDuringExecution", {}))
    terms = required.get("nodeSelectorTerms") or [{}]
    ours = [_expressions(labels) for labels in sets]
    if all(any(all(e in (term.get("matchExpressions") or ()) for e in exprs) for exprs in ours) for term in terms):
        return []  # fenced already (the webhook called again)
    required["nodeSelectorTerms"] = [{**term, "matchExpressions": list(term.get("matchExpressions") or ()) + exprs}
                                     for term in terms for exprs in ours]
    return ["required node affinity"]
