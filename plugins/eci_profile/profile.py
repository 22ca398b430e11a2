"""The ECI-Profile engine: caches, resolution, and what happens at pod creation and at binding."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Dict, List, Mapping, Optional, Tuple

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from framework import ApiError, Denied, Watch, object_path
from plugins.eci_profile import selectors, tiers as tiering, timing
from plugins.eci_profile.binding_labels import BindingLabeler
from plugins.eci_profile.full_tiers import FullTiers, controller_uid
from plugins.eci_profile.cap import SELECTOR_INDEX, SELECTOR_LABEL, CapRecords, RecordBusy, VirtualPods
from plugins.eci_profile.resources import node_fit, requests_of
from plugins.eci_profile.selectors import InvalidSelectorSpec, Selector
from plugins.eci_profile.tiers import TIER_LABEL, Tier
from plugins.eci_profile.settings import Settings

log = logging.getLogger("admission_host.eci_profile")

SELECTORS, NAMESPACES, NODES, PENDING_PODS = "eci-selectors", "eci-namespaces", "eci-nodes", "eci-pending-pods"
OWNER_INDEX = "owner"  # of the pending pods' cache: their controller's uid
OPENED_AT_CREATION = "eci.aliyun.com/opened-at-creation"  # the tier a pod was let into at creation (full_tiers.py)
TIERED_INDEX = "tiered"  # of the Selectors' cache: "true" for those written with spec.tiers
VIRTUAL_PODS = "eci-virtual-pods"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
VIRTUAL_FIRST_COST = "-1000"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# What a pod does that a virtual node may not offer: warned about when a Selector sends it there.
HOST_FIELDS = ("hostNetwork", "hostPID", "hostIPC")
# A cache-miss GET off the admission path (explain, controllers). On the admission path, calls
# take the time the request has left instead (request.time_left()).
API_TIMEOUT = 5.0
# Of a binding's deadline, what the cap's record may not use: the rest of the answer.
CAP_RECORD_SPARE = 0.5


def strip_namespace(obj: dict) -> dict:
    meta = obj.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    # Set by API servers since 1.21; added here so older clusters can select namespaces by name too.
    labels.setdefault(NAMESPACE_NAME_LABEL, meta.get("name", ""))
    return {"metadata": {"name": meta.get("name"), "labels": labels}}


def strip_node(obj: dict) -> dict:
    meta = obj.get("metadata") or {}
    return {"metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}}, "fit": node_fit(obj)}


def is_unschedulable(pod: dict) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "PodScheduled":
            return cond.get("status") == "False" and cond.get("reason") == "Unschedulable"
    return False


def unschedulable_since(pod: dict) -> Optional[float]:
    """When the scheduler first found no node for the pod (the condition's transition time)."""
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("lastTransitionTime"):
            try:
                return timing.parse_time(cond["lastTransitionTime"])
            except ValueError:
                return None
    return None


def left_alone(pod: dict) -> Optional[str]:
    """Why ECI-Profile never changes this pod (None: it may). Such pods must never move."""
    meta = pod.get("metadata") or {}
    for owner in meta.get("ownerReferences") or ():
        if isinstance(owner, dict) and owner.get("kind") == "DaemonSet":
            return "owned by a DaemonSet"
        if isinstance(owner, dict) and owner.get("kind") == "Node":
            return "a mirror pod (static pod of a kubelet)"
    annotations = meta.get("annotations") or {}
    if MIRROR_ANNOTATION in annotations or annotations.get("kubernetes.io/config.source") in ("file", "http"):
        return "a static or mirror pod"
    return None


class Decision:
    """The winning Selector for a pod (or None), the pod's namespace as cached, and when asked
    for, a row per Selector saying whether it matched and why not."""

    __slots__ = ("selector", "namespace", "matching", "rows")

    def __init__(self, namespace: Optional[dict], rows: Optional[List[dict]]):
        self.selector: Optional[Selector] = None
        self.namespace = namespace
        self.matching: List[Selector] = []
        self.rows = rows

    def add(self, sel: Selector, matched: bool, why: str) -> None:
        self.rows.append({"selector": sel.name, "priority": sel.priority, "policy": sel.policy,
                          "matched": matched, "why": why})


def as_pod(pod: dict) -> dict:
    """A Pod as the hooks document it: a cached pending pod (see :func:`strip_pod`) becomes one with
    its metadata and tolerations; a Pod is returned as it is."""
    if "annotationKeys" not in pod:
        return pod
    meta = pod["metadata"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                         "labels": dict(meta.get("labels") or {})},
            "spec": {"tolerations": [dict(t) for t in pod.get("tolerations") or ()]}}


def strip_pod(obj: dict) -> dict:
    """What the binding path and the burst controller need of a pending pod, nothing more."""
    meta = obj.get("metadata") or {}
    stripped = {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                     "resourceVersion": meta.get("resourceVersion"), "labels": meta.get("labels") or {}},
        "annotationKeys": sorted(meta.get("annotations") or ()),
        "tolerations": (obj.get("spec") or {}).get("tolerations") or [],
        "unschedulable": is_unschedulable(obj),
    }
    owner = controller_uid(meta)
    if owner:  # its siblings: what the scheduler found for one it would find for all (full_tiers.py)
        stripped["owner"] = owner
    if stripped["unschedulable"]:
        stripped["unschedulableSince"] = unschedulable_since(obj)
    elif not any(c.get("type") == "PodScheduled" for c in (obj.get("status") or {}).get("conditions") or ()):
        # No word from the scheduler on the pod: it has not tried yet, or its write was lost.
        stripped["createdAt"] = meta.get("creationTimestamp") or ""
    alone = left_alone(obj)
    if alone:
        stripped["leftAlone"] = alone
    return stripped


def strip_virtual_pod(obj: dict) -> dict:
    """A pod the host bound to a virtual node: what counts, status and drain-back need."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    owner = next((o for o in meta.get("ownerReferences") or () if isinstance(o, dict) and o.get("controller")),
                 None)
    return {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid")},
        "selector": (meta.get("labels") or {}).get(SELECTOR_LABEL, ""),
        # What it counts towards: its Selector's pods on virtual nodes, or a tier's (tiers.Tier.cap_key).
        "capKey": "/".join(filter(None, ((meta.get("labels") or {}).get(SELECTOR_LABEL, ""),
                                         (meta.get("labels") or {}).get(TIER_LABEL)))),
        "node": spec.get("nodeName") or "",
        "deleting": bool(meta.get("deletionTimestamp")),
        "phase": status.get("phase") or "",
        "startTime": status.get("startTime") or "",
        "owner": {"kind": owner.get("kind"), "name": owner.get("name"), "uid": owner.get("uid")} if owner else None,
        "createdAt": meta.get("creationTimestamp") or "",
        # What a normal node must offer to take it back (drain-back).
        "requests": requests_of(spec),
        "nodeSelector": spec.get("nodeSelector") or {},
        "tolerations": spec.get("tolerations") or [],
    }


class EciProfile:
    def __init__(self, host, settings: Settings):
        self.host = host
        self.settings = settings
        self.kube = host.kube
        pm = host.pluginmanager
        self.hook = pm.hook
        self.policies = {}
        for batch in reversed(self.hook.eci_policies(settings=settings)):  # later plugins win
            for policy in batch or ():
                self.policies[policy.name] = policy
        # The hooks are consulted per request only when another plugin implements them.
        self.custom_match = len(self.hook.eci_selector_matches.get_hookimpls()) > 1
        self.custom_resolve = len(self.hook.eci_resolve.get_hookimpls()) > 1
        self.metrics = host.metrics
        self.matches = Counter("eci_profile_selector_matches", "Pods a Selector won, by Selector, policy and "
                               "phase (create, binding).", ["selector", "policy", "phase"],
                               registry=host.metrics.registry)
        self._match_counts: Dict[tuple, object] = {}  # its children, found once (labels() costs ~2 µs)
        self.burst_actions = Counter("eci_profile_burst_actions", "Burst controller decisions on Unschedulable "
                                     "pods (patched, conflict, gone, error).", ["outcome"],
                                     registry=host.metrics.registry)
        self.burst_decisions = Counter("eci_profile_burst_decisions", "Pods burst to virtual nodes, by why they "
                                       "burst then (unschedulable, burstAfter, noAutoscaler, autoscalerCannotHelp, "
                                       "maxWait; siblingUnschedulable, openedAtCreation: a pod of the same workload "
                                       "was found Unschedulable moments before).", ["reason"], registry=host.metrics.registry)
        self.cap_denials = Counter("eci_profile_cap_denials", "Bindings to virtual nodes refused and bursts held "
                                   "because a Selector's maxVirtualPods was reached.", ["selector", "phase"],
                                   registry=host.metrics.registry)
        self.drain_backs = Counter("eci_profile_drain_backs", "Pods evicted from virtual nodes back to normal "
                                   "nodes (evicted), or held back by a PodDisruptionBudget (blocked).",
                                   ["selector", "outcome"], registry=host.metrics.registry)
        self.cap_record_errors = Counter("eci_profile_cap_record_errors", "Bindings to virtual nodes checked "
                                         "against this replica's count alone, because the Selector's cap record "
                                         "could not be read or written.", ["selector"],
                                         registry=host.metrics.registry)
        self.cap_evictions = Counter("eci_profile_cap_evictions", "Pods on virtual nodes evicted because their "
                                     "Selector was over maxVirtualPods (capEnforcement: Evict), by outcome (evicted; "
                                     "blocked: a PodDisruptionBudget said not now; gone).", ["selector", "outcome"],
                                     registry=host.metrics.registry)
        self.repairs = Counter("eci_profile_repairs", "What the leader restored on pods admitted while no replica "
                               "answered, or whose writes were lost (tolerations on pending pods; effect on pods on "
                               "virtual nodes).", ["what"], registry=host.metrics.registry)
        host.metrics.registry.register(_SelectorGauges(self))
        self.full_tiers = FullTiers(full_for=settings.full_tier_for)
        #: called with (Selector, tier index, controller uid) when a tier is newly found full
        self.on_tier_full: List = []
        self._virtual: Optional[VirtualPods] = None
        self._cap_records: Optional[CapRecords] = None
        self._events: "queue.Queue" = queue.Queue(maxsize=1000)
        self._events_sent: Dict[tuple, float] = {}
        self._event_thread: Optional[threading.Thread] = None
        self._events_lock = threading.Lock()  # admissions and the burst controller's workers post at once
        self.binding_labels = Counter("eci_profile_binding_labels", "Pods bound to virtual nodes given their "
                                      "Selector's labels, by outcome (withBinding: the API server copied them from "
                                      "the Binding; labelled: by PATCH; gone, elsewhere: the pod was deleted or bound "
                                      "to another node; failed).", ["outcome"],
                                      registry=host.metrics.registry)
        self.labeler: Optional[BindingLabeler] = None if self.kube is None else BindingLabeler(
            self.kube, outcome=lambda outcome: self.binding_labels.labels(outcome).inc(), seen=self.labels_seen,
            failed=lambda pod_meta, why: self.event_later(
                pod_meta, "VirtualNodeLabelsFailed", f"could not add the Selector's labels: {why}", "Warning"))

    @property
    def virtual(self) -> VirtualPods:
        """Each Selector's pods on virtual nodes (the cache exists once the watches are declared)."""
        if self._virtual is None:
            self._virtual = VirtualPods(self.host.store(VIRTUAL_PODS))
        return self._virtual

    def labels_seen(self, namespace: str, name: str, uid: str, labels: Mapping[str, str]) -> bool:
        """Whether the watch of virtual pods shows the pod with the Selector (and tier) labels of
        ``labels``: a Binding's labels are copied onto the pod all at once, or not at all."""
        pod = self.host.store(VIRTUAL_PODS).get(f"{namespace}/{name}")
        wanted = "/".join(filter(None, (labels.get(SELECTOR_LABEL), labels.get(TIER_LABEL))))
        return pod is not None and pod["metadata"]["uid"] == uid and pod["capKey"] == wanted

    @property
    def cap_records(self) -> Optional[CapRecords]:
        """The caps' records every replica shares (None without an API server)."""
        if self._cap_records is None and self.kube is not None:
            pending = self.host.store(PENDING_PODS)
            self._cap_records = CapRecords(
                self.kube, self.host.config.lease_namespace, self.virtual,
                pending=lambda key, uid: (pending.get(key) or {}).get("metadata", {}).get("uid") == uid)
        return self._cap_records

    # -- caches -----------------------------------------------------------------------------------
    def watches(self) -> List[Watch]:
        return [
            Watch(name=SELECTORS, group=selectors.GROUP, version="v1", resource="selectors", kind="Selector",
                  transform=self.compile_selector,
                  indexers={selectors.OBJECT_INDEX: selectors.object_anchor,
                            selectors.NAMESPACE_INDEX: selectors.namespace_anchor,
                            selectors.OBJECT_KEY_INDEX: selectors.object_anchor_keys,
                            selectors.NAMESPACE_KEY_INDEX: selectors.namespace_anchor_keys,
                            TIERED_INDEX: lambda e: ["true"] if e["selector"] is not None and e["selector"].tiered
                            else []}),
            Watch(name=NAMESPACES, resource="namespaces", kind="Namespace", transform=strip_namespace),
            Watch(name=NODES, resource="nodes", kind="Node", transform=strip_node),
            Watch(name=PENDING_PODS, resource="pods", kind="Pod",
                  field_selector="spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed",
                  transform=strip_pod, indexers={OWNER_INDEX: lambda p: [p["owner"]] if p.get("owner") else []}),
            # Pods this host bound to virtual nodes: the caps, the status counts and drain-back.
            Watch(name=VIRTUAL_PODS, resource="pods", kind="Pod", label_selector=SELECTOR_LABEL,
                  transform=strip_virtual_pod, indexers={SELECTOR_INDEX: lambda p: [p["capKey"]]}),
        ]

    def track_full_tiers(self) -> None:
        """Every replica learns from the pending pods which tiers the scheduler found full (full_tiers.py)."""
        self.host.store(PENDING_PODS).add_handler(self._on_pending_pod)
        self.host.store(NODES).add_handler(self._on_node)

    def _on_pending_pod(self, event, old, new) -> None:
        if new is None or not new.get("unschedulable") or not new.get("owner") or new.get("leftAlone"):
            return
        if old is not None and old.get("unschedulable") and old.get("tolerations") == new.get("tolerations"):
            return  # the same verdict again, or a write that is not the scheduler's
        meta = new["metadata"]
        selector = self.resolve(new, meta["namespace"]).selector
        if selector is None:
            return
        here = tiering.furthest(selector.tiers, new["tolerations"], self.settings)
        if here < len(selector.tiers) - 1 and selector.tiers[here].moves_on_at_once:
            if self.full_tiers.saw_unschedulable(selector.name, here, new["owner"]):
                for call in self.on_tier_full:
                    call(selector.name, here, new["owner"])

    def _on_node(self, event, old, new) -> None:
        node = new or old
        if self.settings.is_virtual_node(node["metadata"]["labels"]):
            return
        if old is None or new is None or old["metadata"]["labels"] != new["metadata"]["labels"] \
                or old.get("fit") != new.get("fit"):
            self.full_tiers.forget()  # room may have come with it

    def compile_selector(self, obj: dict) -> dict:
        """The cached form of a Selector: compiled, or the reason it is left out of matching."""
        meta = obj.get("metadata") or {}
        entry = {"metadata": {"name": meta.get("name"), "uid": meta.get("uid"),
                              "generation": meta.get("generation"), "resourceVersion": meta.get("resourceVersion")},
                 "selector": None, "error": None,
                 "status": obj.get("status") or {}}
        try:
            entry["selector"] = selectors.parse(obj, self.policies)
        except InvalidSelectorSpec as exc:
            entry["error"] = str(exc)
            log.warning("Selector %s is invalid and ignored: %s", meta.get("name"), exc)
        return entry

    def _cached_or_get(self, store_name: str, resource: str, strip, name: str, namespace: str = "",
                       timeout: float = API_TIMEOUT) -> Optional[dict]:
        found = self.host.store(store_name).get_by_name(name, namespace)
        if found is not None or self.kube is None:
            return found
        path = object_path("v1", resource, name, namespace)
        try:  # just created and not yet seen by the watch: one GET
            return strip(self.kube.get(path, timeout=timeout))
        except ApiError as exc:
            if exc.status != 404:
                log.warning("GET %s failed: %s", path, exc)
            return None

    def namespace(self, name: str, timeout: float = API_TIMEOUT) -> Optional[dict]:
        return self._cached_or_get(NAMESPACES, "namespaces", strip_namespace, name, timeout=timeout)

    def node_is_virtual(self, name: str, timeout: float = API_TIMEOUT) -> bool:
        return self.settings.is_virtual_node(self.node_labels(name, timeout))  # an unknown node has no labels

    def pending_pod(self, namespace: str, name: str, timeout: float = API_TIMEOUT) -> Optional[dict]:
        return self._cached_or_get(PENDING_PODS, "pods", strip_pod, name, namespace, timeout)

    # -- resolution -------------------------------------------------------------------------------
    def resolve(self, pod: dict, namespace_name: str, timeout: float = API_TIMEOUT,
                reasons: bool = False) -> "Decision":
        """Which Selector wins for a pod, and (with ``reasons``) why each one did or did not match:
        the one resolution admission, the burst controller and ``explain`` share. ``pod`` is a Pod
        (or the cached view of one, which :func:`as_pod` turns into one for ``eci_resolve``)."""
        pod_labels = (pod.get("metadata") or {}).get("labels") or {}
        ns = self.namespace(namespace_name, timeout) if namespace_name else None
        ns_labels = ns["metadata"]["labels"] if ns else {}
        decision = Decision(ns, [] if reasons else None)
        store = self.host.store(SELECTORS)
        if not len(store):
            return decision
        found = selectors.candidates(store, pod_labels, ns_labels)
        matching = []
        for sel in found:
            if self.custom_match:
                matched = self.hook.eci_selector_matches(selector=sel, pod_labels=pod_labels,
                                                         namespace_labels=ns_labels)
                why = "matched" if matched else "not matched (a plugin's eci_selector_matches said no)"
            elif reasons:
                why = sel.explain(pod_labels, ns_labels)
                matched = why is None
            else:
                matched = sel.matches(pod_labels, ns_labels)
            if matched:
                matching.append(sel)
            if reasons:
                decision.add(sel, matched, why or "matched")
        if reasons:  # the Selectors the index did not even propose, and the invalid ones
            proposed = {sel.name for sel in found}
            for entry in store.list():
                sel = entry["selector"]
                if sel is None:
                    decision.rows.append({"selector": entry["metadata"]["name"], "matched": False,
                                          "why": f"invalid, ignored: {entry['error']}"})
                elif sel.name not in proposed:
                    decision.add(sel, False, sel.explain(pod_labels, ns_labels) or "not matched")
            decision.rows.sort(key=lambda row: row["selector"])
        if matching:
            decision.selector = (self.hook.eci_resolve(matching=matching, pod=as_pod(pod), namespace=ns)
                                 if self.custom_resolve else matching[0])
            decision.matching = matching
        return decision

    def explain_lines(self, pod: dict, namespace_name: str) -> List[str]:
        ns = self.namespace(namespace_name)
        ns_labels = ns["metadata"]["labels"] if ns else {}
        pod_labels = (pod.get("metadata") or {}).get("labels") or {}
        lines = [f"pod labels: {_labels(pod_labels)}",
                 f"namespace {namespace_name}: " + (f"labels {_labels(ns_labels)}" if ns else "not found (no labels)")]
        alone = left_alone(pod)
        if alone:
            lines.append(f"left alone: the pod is {alone}; ECI-Profile never changes such a pod")
            return lines
        node = (pod.get("spec") or {}).get("nodeName")
        if node and not (pod.get("status") or {}).get("phase"):
            lines.append(f"created on node {node} (spec.nodeName: it bypasses the scheduler): its placement is left "
                         "alone; it gets the effect " + ("(a virtual node)" if self.node_is_virtual(node)
                                                         else "only on a virtual node, and this one is not"))
        decision = self.resolve(pod, namespace_name, reasons=True)
        if not decision.rows:
            lines.append("no Selectors")
        for row in decision.rows:
            head = f"Selector {row['selector']}"
            if "priority" in row:
                head += f" (priority {row['priority']}, {row['policy']})"
            lines.append(f"{head}: {row['why']}")
        winner = decision.selector
        if winner is None:
            lines.append("winner: none; the pod is left alone")
            return lines
        if self.custom_resolve:
            why = "chosen by a plugin's eci_resolve"
        else:
            ties = [s.name for s in decision.matching if s.priority == winner.priority and s is not winner]
            why = f"highest priority ({winner.priority})"
            if ties:
                why += f", tie with {', '.join(ties)} broken by name"
        lines.append(f"winner: {winner.name} ({winner.policy}), {why}")
        policy = self.policies.get(winner.policy)
        if policy is not None:
            when = ("at creation (the pod is certain to run on a virtual node)" if policy.effect_at_create
                    else "when the pod is bound to a virtual node")
            lines.append(f"effect: annotations {_labels(winner.annotations)}, labels {_labels(winner.labels)}, {when}")
            if policy.burst_when_unschedulable:
                lines.append("if no normal node fits: the virtual-node tolerations are added and it may burst")
                lines.append(self._explain_timing(pod, winner))
        elif winner.tiered:
            lines.append(f"effect: annotations {_labels(winner.annotations)}, labels {_labels(winner.labels)}, when "
                         "the pod is bound to a virtual node")
        lines += self._explain_tiers(pod, winner)
        lines += self._explain_burst_engine(pod, winner)
        return lines

    def _explain_tiers(self, pod: dict, sel: Selector) -> List[str]:
        """Its tiers, and where the pod is among them now and why."""
        words = []
        for i, tier in enumerate(sel.tiers):
            nodes = ("virtual nodes" if tier.virtual else "normal nodes") + (
                f" {_labels(tier.node_labels)}" if tier.node_labels else "")
            what = [nodes]
            if tier.fenced and not (tier.virtual and not tier.tolerations):
                what.append("opened by tolerations " + ", ".join(t.get("key") or "*" for t in tier.tolerations))
            if tier.max_pods is not None:
                what.append(f"max {tier.max_pods}, {self.virtual.count(tier.cap_key)} there now")
            if i < len(sel.tiers) - 1 and tier.moves_on and sel.tiered:
                what.append(f"moves on after {selectors.format_duration(tier.burst_delay)} Unschedulable"
                            + (" (waits for an autoscaler)" if tier.wait_for_autoscaler else ""))
            words.append(f"{tier.name} ({'; '.join(what)})")
        lines = ["tiers: " + " > ".join(words)]
        node = (pod.get("spec") or {}).get("nodeName")
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        if node:
            labels = self.node_labels(node)
            index = tiering.node_tier(sel.tiers, labels, self.settings.is_virtual_node(labels))
            lines.append(f"tier now: {sel.tiers[index].name} (on node {node})" if index is not None else
                         f"tier now: none (node {node} is in none of its tiers)")
            return lines
        if not (pod.get("status") or {}).get("phase"):  # being created: what admission gives it
            opened = [sel.tiers[i].name for i in tiering.open_at_create(sel.tiers)]
            lines.append(f"tier at creation: may use {', '.join(opened)}" + (
                "; the unfenced ones in that order of preference" if len(opened) > 1 else ""))
            return lines
        here = tiering.furthest(sel.tiers, tolerations, self.settings)
        open_now = [t.name for i, t in enumerate(sel.tiers) if i <= here and (not t.fenced or i == 0 or
                                                                          tiering.is_open(t, tolerations, self.settings))]
        line = f"tier now: pending, may use {', '.join(open_now)}"
        if here < len(sel.tiers) - 1 and sel.tiers[here].moves_on:
            line += f"; {self._explain_timing(pod, sel.tiers[here]).replace('burst timing', 'moves on')}"
        lines.append(line)
        return lines

    def _explain_timing(self, pod: dict, rules) -> str:
        """When a pod Unschedulable under ``rules`` (a Selector's normalNodePrefer, or a tier) moves on."""
        rule = (f"burst timing: {selectors.format_duration(rules.burst_delay)} after it becomes Unschedulable")
        if rules.wait_for_autoscaler:
            max_wait = rules.max_wait if rules.max_wait is not None else self.settings.default_max_wait
            rule += (f"; held up to {selectors.format_duration(max(max_wait, rules.burst_delay))} while an "
                     f"autoscaler says it is adding a node for it")
        since = unschedulable_since(pod) if is_unschedulable(pod) else None
        if since is not None:
            rule += (f"; Unschedulable since {timing.iso_time(since)}, "
                     f"so not before {timing.iso_time(since + rules.burst_delay)}")
        return rule

    def _explain_burst_engine(self, pod: dict, sel: Selector) -> List[str]:
        lines = []
        if sel.max_virtual_pods is not None:
            lines.append(f"cap: at most {sel.max_virtual_pods} of its pods on virtual nodes; "
                         f"{self.virtual.count(sel.name)} there now")
        if sel.scale_in == "ReverseTiers":
            lines.append("scale-in: in reverse tier order: " + ", ".join(
                f"{t.name} pod-deletion-cost {sel.deletion_cost(i) or 'none'}" for i, t in enumerate(sel.tiers))
                + " (a cost the pod has is kept)")
        if sel.scale_in == "VirtualFirst":
            own = ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST)
            cost = sel.annotations.get(DELETION_COST, VIRTUAL_FIRST_COST)
            lines.append(f"scale-in: on a virtual node its pod-deletion-cost is {own} (its own, kept)" if own else
                         f"scale-in: bound to a virtual node it gets pod-deletion-cost {cost}, so it goes first")
        if sel.drain_after is not None:
            lines.append(f"drain-back: after {selectors.format_duration(sel.drain_after)} on a virtual node it is "
                         f"evicted when a normal node has room (at most {sel.drain_per_minute} a minute)")
        return lines

    # -- admission ----------------------------------------------------------------------------------
    def mutate_pod(self, request) -> None:
        pod = request.object
        if left_alone(pod):
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if node and not self.node_is_virtual(node, request.time_left()):
            return  # created on a normal node: nothing to place, no effect
        namespace = request.namespace or (pod.get("metadata") or {}).get("namespace") or ""
        selector = self.resolve(pod, namespace, request.time_left()).selector
        if selector is None:
            return
        if node:
            self.effect_on_named_node(request, selector, node)
            return
        policy = self.policies.get(selector.policy)
        changes = policy.at_create(pod, request) if policy is not None else []
        changes += tiering.place_at_create(selector.tiers, pod, self.settings, lambda message: request.warn(
            f"eci-profile: {message} (Selector {selector.name})"))
        changes += self.open_past_full(selector, pod)
        if all(tier.virtual for tier in selector.tiers):  # certain to run on a virtual node
            meta = pod.setdefault("metadata", {})
            changes += self.apply_effect(selector, meta, meta, "annotations", selector.annotations, request)
            changes += self.apply_effect(selector, meta, meta, "labels", selector.labels, request)
        if any(c.startswith("toleration ") for c in changes):  # this Selector sends it to virtual nodes
            for field in host_features(pod):
                request.warn(f"eci-profile: Selector {selector.name} lets this pod run on virtual nodes, "
                             f"which may not support {field}")
        self.record(request, selector, "create", changes)

    def open_past_full(self, selector: Selector, pod: dict) -> List[str]:
        """A pod created moments after the scheduler found a sibling Unschedulable in the tiers open
        to it (tiers that move on at once): the next tier now (unless it has a cap), with a preference
        for the earlier ones; it skips a try that would fail (full_tiers.py)."""
        meta, spec = pod.setdefault("metadata", {}), pod["spec"]
        owner = controller_uid(meta)
        if not owner or not self.full_tiers:  # every pod's path: nothing believed, nothing to work out
            return []
        tiers = selector.tiers
        here = tiering.furthest(tiers, spec.get("tolerations") or (), self.settings)
        if here == len(tiers) - 1 or not tiers[here].moves_on_at_once or not self.full_tiers.full(
                selector.name, here, owner):
            return []
        tier = tiers[here + 1]
        if tier.max_pods is not None:
            # Pods opened here are not known until created; the burst controller counts those it
            # let in, so a capped tier is only let into by it, and its bursts stay within the cap.
            return []
        added = tiering.missing(spec.get("tolerations"), tiering.opening_tolerations(tier, self.settings))
        spec["tolerations"] = list(spec.get("tolerations") or ()) + added
        preferred = (spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
                     .setdefault("preferredDuringSchedulingIgnoredDuringExecution", []))
        preferred.extend(t for t in tiering.prefer_before(tiers, here, self.settings) if t not in preferred)
        meta.setdefault("annotations", {})[OPENED_AT_CREATION] = tier.name
        self.burst_decisions.labels("openedAtCreation").inc()
        owner_ref = next(o for o in meta["ownerReferences"] if isinstance(o, dict) and o.get("controller"))
        self.event_later({"name": owner_ref.get("name"), "namespace": meta.get("namespace"), "uid": owner},
                         "OpenedAtCreation", f"Selector {selector.name}: the scheduler found a pod of this "
                         f"{owner_ref.get('kind')} Unschedulable in tier {tiers[here].name}; its new pods are let into "
                         f"tier {tier.name} at creation, preferring {tiers[here].name}", once_per=60.0,
                         kind=owner_ref.get("kind") or "", api_version=owner_ref.get("apiVersion") or "")
        return [f"toleration {t.get('key', '')}" for t in added] + [f"annotation {OPENED_AT_CREATION}",
                                                                    "preferred node affinity"]

    def effect_on_named_node(self, request, selector: Selector, node: str) -> None:
        """A pod created with ``spec.nodeName`` of a virtual node bypasses the scheduler, so no
        binding will come: it gets at creation what a binding there would give it (its placement is
        its creator's: no tolerations, no nodeSelector)."""
        meta = request.object.setdefault("metadata", {})
        labels = self.node_labels(node, request.time_left())
        index = tiering.node_tier(selector.tiers, labels, True)
        # The pod's own keys are kept with a warning: the effect's labels are offered whole here.
        annotations, added_labels = self.placed_effect(selector, index, True, {})
        changes = self.apply_effect(selector, meta, meta, "annotations", annotations, request)
        changes += self.apply_effect(selector, meta, meta, "labels", added_labels, request)
        self.record(request, selector, "create", changes, node)

    def node_labels(self, name: str, timeout: float = API_TIMEOUT) -> Mapping[str, str]:
        node = self._cached_or_get(NODES, "nodes", strip_node, name, timeout=timeout)
        return node["metadata"]["labels"] if node is not None else {}

    def mutate_binding(self, request) -> None:
        binding = request.object
        target = binding.get("target") or {}
        if target.get("kind", "Node") != "Node" or not target.get("name"):
            return
        node = self._cached_or_get(NODES, "nodes", strip_node, target["name"], timeout=request.time_left())
        if node is None:
            return
        node_labels = node["metadata"]["labels"]
        virtual = self.settings.is_virtual_node(node_labels)
        if not virtual and not self.host.store(SELECTORS).index_values(TIERED_INDEX):
            return  # a normal node, and no Selector has tiers there: nothing to give
        meta = binding.get("metadata") or {}
        namespace = request.namespace or meta.get("namespace") or ""
        name = request.name or meta.get("name") or ""
        pod = self.pending_pod(namespace, name, request.time_left())
        if pod is None:
            log.warning("binding of %s/%s to node %s: pod not found; no effect applied", namespace, name,
                        target["name"])
            return
        if pod.get("leftAlone"):
            return
        selector = self.resolve(pod, namespace, request.time_left()).selector
        if selector is None:
            return
        index = tiering.node_tier(selector.tiers, node_labels, virtual)
        if index is None and not virtual:
            return  # outside its tiers (the pod's own tolerations took it there)
        pod_meta = pod["metadata"]
        tier = selector.tiers[index] if index is not None else None
        if tier is not None and tier.max_pods is not None:
            self.check_cap(selector, tier, pod_meta, request)
        annotations, labels = self.placed_effect(selector, index, virtual, pod_meta["labels"])
        pod_annotations = dict.fromkeys(pod.get("annotationKeys") or ())
        # Annotations ride on the Binding: the API server copies them onto the pod as it binds.
        changes = self.apply_effect(selector, binding.setdefault("metadata", {}), {"annotations": pod_annotations},
                                    "annotations", annotations, request)
        if virtual:
            for key in selector.labels:
                if key in pod_meta["labels"] and pod_meta["labels"][key] != selector.labels[key]:
                    self._warn_kept(request, selector, "label", key)
        if labels:
            # Since 1.35 the API server copies a Binding's labels onto the pod as it binds; before,
            # or with that feature off, the labeler PATCHes them once the binding is stored.
            on_binding = self.labeler is None or self.labeler.binding_copies is not False
            if on_binding:
                binding["metadata"].setdefault("labels", {}).update(labels)
                changes += [f"label {k}" for k in labels]
            elif request.dry_run:
                changes.append("labels (skipped: dry run)")
            else:
                changes += [f"label {k} (once bound)" for k in labels]
            if self.labeler is not None and not request.dry_run:
                self.labeler.label(namespace, name, pod_meta.get("uid") or "", target["name"], labels,
                                   has_labels=bool(pod_meta["labels"]), on_binding=on_binding)
        self.record(request, selector, "binding", changes, target["name"])

    @staticmethod
    def placed_effect(selector: Selector, tier: Optional[int], virtual: bool,
                      pod_labels: Mapping[str, str]) -> Tuple[Dict[str, str], Dict[str, str]]:
        """The annotations and labels a pod bound to a node of tier ``tier`` (None: of none of the
        Selector's tiers) gets, where it has none of its own under that key: on a virtual node the
        effect's; the tier's pod-deletion-cost (scale-in in reverse tier order, or VirtualFirst);
        and the labels the caps, the status and drain-back count by: the Selector's name (on a
        virtual node, or in a tier of ``spec.tiers``) and the tier's."""
        annotations = dict(selector.annotations) if virtual else {}
        cost = selector.deletion_cost(tier) if tier is not None else None
        if cost is not None:
            annotations.setdefault(DELETION_COST, cost)  # a cost the effect names is kept
        labels = {k: v for k, v in selector.labels.items() if k not in pod_labels} if virtual else {}
        labelled = tier is not None and selector.tiers[tier].labelled
        if virtual or labelled:
            labels[SELECTOR_LABEL] = selector.name
        if labelled:
            labels[TIER_LABEL] = selector.tiers[tier].name
        return annotations, labels

    def apply_effect(self, selector: Selector, target_meta: dict, pod_meta: Mapping, field: str,
                     values: Mapping[str, str], request) -> List[str]:
        """Add ``values`` to ``target_meta[field]``; keys the pod already has keep their value."""
        if not values:
            return []
        existing = pod_meta.get(field) or {}
        added = []
        for key, value in values.items():
            if key in existing:
                if existing[key] is not None and existing[key] != value:
                    self._warn_kept(request, selector, field[:-1], key)
                continue
            target = target_meta.get(field)
            if not isinstance(target, dict):
                target = target_meta[field] = {}
            if target.get(key) != value:
                target[key] = value
                added.append(f"{field[:-1]} {key}")
        return added

    def check_cap(self, selector: Selector, tier: Tier, pod_meta: Mapping, request) -> None:
        """Refuse a binding into a tier past its cap (maxPods; a preset's virtual tier:
        maxVirtualPods), counting what every replica allowed (the cap's record in the API server:
        a read and a write). When the record cannot be had, this replica's own count decides
        (failing open as far as the other replicas' bindings in flight), and
        ``eci_profile_cap_record_errors_total`` says so."""
        cap, uid, key = tier.max_pods, pod_meta.get("uid") or "", tier.cap_key
        if request.dry_run:  # reserves nothing: no pod will be bound
            used = self.virtual.count(key)
            allowed = used < cap
        elif self.cap_records is not None:
            try:
                allowed, used = self.cap_records.reserve(
                    key, uid, f"{pod_meta.get('namespace')}/{pod_meta.get('name')}", cap,
                    max(0.1, request.time_left() - CAP_RECORD_SPARE))
            except RecordBusy as exc:  # refused, not failed open: the scheduler tries the binding again
                self.cap_denials.labels(selector.name, "binding").inc()
                raise Denied(f"{exc}; the pod waits for the scheduler's next try") from None
            except ApiError as exc:
                log.warning("cap %s: its record failed (%s); counting this replica's view", key, exc)
                self.cap_record_errors.labels(selector.name).inc()
                allowed, used = self.virtual.reserve(key, uid, cap)
            else:
                if allowed:
                    self.virtual.reserved(key, uid)
        else:
            allowed, used = self.virtual.reserve(key, uid, cap)
        if allowed:
            return
        self.cap_denials.labels(selector.name, "binding").inc()
        where = f"in tier {tier.name}" if tier.labelled else "on virtual nodes"
        message = (f"Selector {selector.name} allows at most {cap} pods {where} ({used} there now); the pod waits "
                   f"for another tier or a free place")
        self.event_later(pod_meta, "VirtualPodCapReached", message, "Warning", once_per=60.0)
        raise Denied(message)

    @staticmethod
    def _warn_kept(request, selector: Selector, what: str, key: str) -> None:
        request.warn(f"eci-profile: pod already has {what} {key}; kept its value, Selector {selector.name} skipped it")

    def record(self, request, selector: Selector, phase: str, changes: List[str], node: str = "") -> None:
        request.audit(self.settings.audit_annotation, selector.name)
        key = (selector.name, selector.policy, phase)
        counted = self._match_counts.get(key)
        if counted is None:
            counted = self._match_counts[key] = self.matches.labels(*key)
        counted.inc()
        if not log.isEnabledFor(logging.DEBUG):
            return
        where = f" to {node}" if node else ""
        # Debug only: the host's one INFO line per changed admission names the audit key, not the Selector.
        log.debug("Selector %s (%s) applied to pod %s/%s at %s%s: %s", selector.name, selector.policy,
                 request.namespace, request.name or (request.object.get("metadata") or {}).get("generateName", ""),
                 phase, where, ", ".join(changes) or "no change")

    def evict(self, pod_meta: Mapping) -> str:
        """Ask the Eviction API to remove a pod (its PodDisruptionBudgets decide): ``evicted``,
        ``blocked`` (a budget says not now) or ``gone``."""
        path = object_path("v1", "pods", pod_meta["name"], pod_meta["namespace"]) + "/eviction"
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod_meta["name"], "namespace": pod_meta["namespace"]}}
        try:
            self.kube.post(path, body)
        except ApiError as exc:
            if exc.status == 429:
                return "blocked"
            if exc.status == 404:
                return "gone"
            raise
        return "evicted"

    # -- events -----------------------------------------------------------------------------------------
    def event_later(self, pod_meta: Mapping, reason: str, message: str, type_: str = "Normal",
                    once_per: float = 0.0, key: str = "", kind: str = "Pod", api_version: str = "v1") -> None:
        """An Event on a pod (or another ``kind``), posted by a background thread: never an API call on
        the request path.

        With ``once_per``, the same reason (and ``key``) on the same pod is posted at most that often.
        """
        if self.kube is None or not self.settings.events:
            return
        now = time.monotonic()
        dedupe = (pod_meta.get("uid"), reason, key)
        if once_per:
            with self._events_lock:
                if now - self._events_sent.get(dedupe, -once_per) < once_per:
                    return
                if len(self._events_sent) > 10000:  # forget the oldest half
                    for k, _ in sorted(self._events_sent.items(), key=lambda kv: kv[1])[:5000]:
                        del self._events_sent[k]
                self._events_sent[dedupe] = now
        involved = {"apiVersion": api_version, "kind": kind, "name": pod_meta.get("name"),
                    "namespace": pod_meta.get("namespace"), "uid": pod_meta.get("uid") or ""}
        try:
            self._events.put_nowait((involved, reason, message, type_))
        except queue.Full:
            log.warning("event queue full; dropped %s on %s", reason, pod_meta.get("name"))
            return
        with self._events_lock:
            if self._event_thread is None:
                self._event_thread = threading.Thread(target=self._post_events, name="eci-profile-events",
                                                      daemon=True)
                self._event_thread.start()

    def _post_events(self) -> None:
        while True:
            try:
                self.event(*self._events.get())
            except Exception:  # an Event is worth a log line, never the thread
                log.exception("could not post an event")

    def event(self, involved: Dict[str, str], reason: str, message: str, type_: str = "Normal") -> None:
        if self.kube is None or not self.settings.events:
            return
        namespace = involved.get("namespace") or "default"
        now = timing.iso_time(time.time())
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{involved.get('name', 'x')}.", "namespace": namespace},
                "involvedObject": involved, "reason": reason, "message": message, "type": type_,
                "source": {"component": "admission-host-eci-profile"},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": "admission-host-eci-profile", "reportingInstance": self.host.config.identity}
        try:
            self.kube.post(object_path("v1", "events", namespace=namespace), body)
        except ApiError as exc:
            log.warning("could not record event %s on %s: %s", reason, involved.get("name"), exc)


class _SelectorGauges:
    """Per Selector: its pods on virtual nodes and its cap, read from the caches at scrape time."""

    def __init__(self, profile: "EciProfile"):
        self.profile = profile

    def describe(self):  # no samples at registration: the caches may not exist yet
        return [GaugeMetricFamily(name, "", labels=labels) for name, labels in (
            ("eci_profile_virtual_pods", ["selector"]), ("eci_profile_virtual_pods_cap", ["selector"]),
            ("eci_profile_tier_pods", ["selector", "tier"]), ("eci_profile_tier_pods_cap", ["selector", "tier"]))]

    def collect(self):
        used = GaugeMetricFamily("eci_profile_virtual_pods", "A Selector's pods on virtual nodes (labelled "
                                 "eci.aliyun.com/selector, not being deleted).", labels=["selector"])
        cap = GaugeMetricFamily("eci_profile_virtual_pods_cap", "A Selector's maxVirtualPods.", labels=["selector"])
        tier_used = GaugeMetricFamily("eci_profile_tier_pods", "A Selector's pods in each of its tiers that are "
                                      "counted: every tier of spec.tiers, a policy's virtual nodes.",
                                      labels=["selector", "tier"])
        tier_cap = GaugeMetricFamily("eci_profile_tier_pods_cap", "A tier's maxPods (a policy's virtual nodes: "
                                     "maxVirtualPods).", labels=["selector", "tier"])
        for entry in self.profile.host.store(SELECTORS).list():
            sel = entry.get("selector")
            if sel is None:
                continue
            for tier in sel.tiers:
                if not tier.counted:
                    continue
                count = self.profile.virtual.count(tier.cap_key)
                tier_used.add_metric([sel.name, tier.name], count)
                if tier.max_pods is not None:
                    tier_cap.add_metric([sel.name, tier.name], tier.max_pods)
                if tier.virtual:
                    used.add_metric([sel.name], count)
                    if tier.max_pods is not None:
                        cap.add_metric([sel.name], tier.max_pods)
        yield from (used, cap, tier_used, tier_cap)


def host_features(pod: Mapping) -> List[str]:
    """The pod's fields that need the node's own kernel, network or disk."""
    spec = pod.get("spec") or {}
    found = [f"spec.{f}" for f in HOST_FIELDS if spec.get(f) is True]
    for v in spec.get("volumes") or ():
        if isinstance(v, dict) and v.get("hostPath") is not None:
            found.append(f"spec.volumes[{v.get('name')}].hostPath")
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or ():
            context = c.get("securityContext") if isinstance(c, dict) else None
            if context and context.get("privileged") is True:
                found.append(f"spec.{kind}[{c.get('name')}].securityContext.privileged")
    return found


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none)"
