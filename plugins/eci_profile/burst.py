"""normalNodePrefer bursting: pods the scheduler cannot place on normal nodes get the
virtual-node tolerations, and the scheduler retries them at once (leader only).

When a pod bursts follows the rules of :mod:`plugins.eci_profile.timing` (burstAfter, an
autoscaler's Events, maxWait) and the Selector's cap (maxVirtualPods). Everything is read from
the pod and its Events, so a new leader picks up where the last one stopped.

Adding tolerations to an existing pod is one of the few pod spec updates the API server allows.
Each PATCH first tests the pod's uid, that it is still unbound, and that its tolerations are the ones
cached, so a stale cache or a second replica can never add the tolerations twice; a status write
in between (the scheduler's condition) does not fail it, as a resourceVersion test would.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, Optional, Set, Tuple

from framework import JSON_PATCH, ApiError, WorkQueue, object_path
from plugins.eci_profile import tiers as tiering, timing
from plugins.eci_profile.profile import OWNER_INDEX, PENDING_PODS, SELECTORS, VIRTUAL_PODS, EciProfile, strip_pod

log = logging.getLogger("admission_host.eci_profile.burst")

# While an autoscaler may still speak, look at the pod's Events again this often.
AUTOSCALER_POLL_SECONDS = 5.0
# The leader looks for pods whose look was lost this often (see BurstController.resync).
RESYNC_SECONDS = 30.0
# A pod with no PodScheduled condition this long after its creation: did the scheduler say
# FailedScheduling in an Event whose condition write was lost?
STRANDED_AFTER_SECONDS = 30.0
# Pods reconciled at once. Each reconcile is mostly waiting for the API server (a PATCH, maybe a
# GET of Events); one at a time, a burst's first verdict reached its siblings at ~20 a second and
# most were tried and found Unschedulable by the scheduler first.
WORKERS = 8


def _only_version_changed(old: Optional[dict], new: dict) -> bool:
    """Nothing the decision reads changed (a status write the cached view does not keep): the
    pod's earlier reconcile stands, and a wait it scheduled is still in the queue."""
    if old is None or old["metadata"]["resourceVersion"] == new["metadata"]["resourceVersion"]:
        return False
    unversioned = {**old["metadata"], "resourceVersion": new["metadata"]["resourceVersion"]}
    return {**old, "metadata": unversioned} == new


class BurstController:
    name = "eci-profile-burst"

    def __init__(self, profile: EciProfile, clock: Callable[[], float] = time.time):
        self.profile = profile
        self.clock = clock
        self.pods = profile.host.store(PENDING_PODS)
        self.queue = WorkQueue(self.name, metrics=profile.host.metrics)
        self.active = False
        self.actions = profile.burst_actions
        #: Selector name -> keys of its pods waiting to burst (for the Selector's status).
        self.waiting: Dict[str, Set[str]] = {}
        #: Pods with no PodScheduled condition that a FailedScheduling Event says the scheduler
        #: tried: key -> when it first said so. Handled as Unschedulable since then.
        self.failed_scheduling: Dict[str, float] = {}
        #: Cap key -> pods this controller tolerated (or is tolerating) for a capped tier that
        #: are not bound yet: they count against the cap before their binding does (else a burst
        #: tolerates past it).
        self.tolerated: Dict[str, Set[str]] = {}
        # The bookkeeping above is shared by the workers and the watch's handlers.
        self._lock = threading.RLock()
        self.on_waiting_changed: Callable[[str], None] = lambda selector: None
        self.pods.add_handler(self.on_pod)
        profile.host.store(SELECTORS).add_handler(self.on_selector)
        profile.host.store(VIRTUAL_PODS).add_handler(self.on_virtual_pod)
        profile.on_tier_full.append(self.on_tier_full)

    def on_pod(self, event, old, new) -> None:
        if new is None:
            key = f"{old['metadata']['namespace']}/{old['metadata']['name']}"
            self.failed_scheduling.pop(key, None)
            with self._lock:
                for keys in self.tolerated.values():
                    keys.discard(key)
                self._not_waiting(key)
        elif self.active and new.get("unschedulable") and not _only_version_changed(old, new):
            self.queue.add([f"{new['metadata']['namespace']}/{new['metadata']['name']}"])

    def on_selector(self, event, old, new) -> None:
        if self.active:  # a Selector appeared or changed: pods waiting may now burst
            self.enqueue_unschedulable()

    def on_virtual_pod(self, event, old, new) -> None:
        # A place under a Selector's cap may have come free: its waiting pods get another look.
        gone = old if new is None or new.get("deleting") else None
        if self.active and gone is not None:
            self.queue.add(self.waiting.get(gone.get("selector"), ()))

    def on_tier_full(self, selector: str, tier: int, owner: str) -> None:
        """A pod of ``owner`` was found Unschedulable: its siblings the scheduler has not tried yet
        move on now rather than fail a try each (full_tiers.py)."""
        if self.active:
            self.queue.add(f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                           for p in self.pods.by_index(OWNER_INDEX, owner) if "createdAt" in p)

    def enqueue_unschedulable(self) -> None:
        self.queue.add(f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                       for p in self.pods.list() if p.get("unschedulable"))

    def run(self, stop: threading.Event) -> None:
        self.active = True
        threading.Thread(target=timing.every, args=(RESYNC_SECONDS, stop, self.resync, f"{self.name} resync"),
                         name=f"{self.name}-resync", daemon=True).start()
        try:
            self.enqueue_unschedulable()
            self.queue.run(stop, self.reconcile, on_error=lambda key: self.actions.labels("error").inc(),
                           workers=WORKERS)
        finally:
            self.active = False

    def resync(self) -> None:
        """Give a look to pending pods whose look was lost: Unschedulable pods not in the queue (a
        watch event missed while the API server was away), and pods the scheduler tried without
        writing their condition (a FailedScheduling Event, the condition's write failed: the
        scheduler itself may not try again for minutes). Pods already waiting keep their time."""
        keys, untried = [], {}
        now = self.clock()
        for pod in self.pods.list():
            meta = pod["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            if pod.get("leftAlone") or self.queue.has(key):
                continue
            if pod.get("unschedulable") or key in self.failed_scheduling or self._needs_tolerations(pod):
                keys.append(key)
            elif pod.get("createdAt") and now - timing.parse_time(pod["createdAt"]) >= STRANDED_AFTER_SECONDS:
                untried.setdefault(meta["namespace"], {})[meta.get("uid")] = key
        for namespace, by_uid in untried.items():
            try:
                events = self.profile.kube.get(object_path("v1", "events", namespace=namespace),
                                               fieldSelector="reason=FailedScheduling").get("items") or []
            except ApiError as exc:
                log.warning("could not read FailedScheduling events in %s: %s", namespace, exc)
                continue
            for event in events:
                key = by_uid.get((event.get("involvedObject") or {}).get("uid"))
                if key is not None:
                    first = timing.parse_time(event.get("firstTimestamp") or event.get("eventTime")
                                              or event["metadata"]["creationTimestamp"])
                    self.failed_scheduling[key] = min(first, self.failed_scheduling.get(key, first))
                    keys.append(key)
        if keys:
            log.info("%s: resync: %d pending pods get a look", self.name, len(set(keys)))
            self.queue.add(keys)

    def _needs_tolerations(self, pod: dict) -> bool:
        """A pending pod without the tolerations its winning Selector's tiers give at creation."""
        selector = self.profile.resolve(pod, pod["metadata"]["namespace"]).selector
        return selector is not None and bool(self._missing_at_create(pod, selector))

    def _missing_at_create(self, pod: dict, selector) -> list:
        wanted = [t for i in tiering.open_at_create(selector.tiers)
                  for t in tiering.opening_tolerations(selector.tiers[i], self.profile.settings)]
        return tiering.missing(pod["tolerations"], wanted)

    def _not_waiting(self, key: str, keep: str = "") -> None:
        """``key`` waits for no Selector (but ``keep``)."""
        with self._lock:
            for name, pods in self.waiting.items():
                if name != keep and key in pods:
                    pods.discard(key)
                    self.on_waiting_changed(name)

    def _wait(self, key: str, selector, pod_meta: dict, message: str, event_key: str) -> None:
        """``key`` waits to burst for ``selector``; its pod is told why, once an hour per ``event_key``."""
        with self._lock:
            self._not_waiting(key, keep=selector.name)  # it may have moved to another Selector
            pods = self.waiting.setdefault(selector.name, set())
            if key not in pods:
                pods.add(key)
                self.on_waiting_changed(selector.name)
        self.profile.event_later(pod_meta, "BurstDelayed", f"Selector {selector.name}: {message}",
                                 key=event_key, once_per=3600)

    def reconcile(self, key: str) -> None:
        pod = self.pods.get(key)
        for _ in range(3):
            selector = None
            if pod is not None and not pod.get("leftAlone"):
                selector = self.profile.resolve(pod, pod["metadata"]["namespace"]).selector
            if selector is None:
                self._not_waiting(key)
                return
            meta, tiers = pod["metadata"], selector.tiers
            missing = self._missing_at_create(pod, selector)
            # No decision: admitted while no replica answered, it gets what admission would have added.
            decision, tier, reserved = None, None, False
            if not missing:
                here = tiering.furthest(tiers, pod["tolerations"], self.profile.settings)
                tried = key in self.failed_scheduling and "createdAt" in pod
                sibling = ("createdAt" in pod and not tried and tiers[here].moves_on_at_once
                           and self.profile.full_tiers.full(selector.name, here, pod.get("owner", "")))
                if here == len(tiers) - 1 or not tiers[here].moves_on or not (pod.get("unschedulable") or tried
                                                                               or sibling):
                    self._not_waiting(key)
                    return
                decision = (timing.Decision(True, self.clock(), "siblingUnschedulable", "a pod of the same "
                                            "workload was found Unschedulable there moments ago") if sibling else
                            self.decide(pod, tiers[here], self.failed_scheduling.get(key) if tried else None))
                tier, reserved = self._next_tier(key, pod, selector, here, decision)
                if tier is None:
                    return
                missing = tiering.missing(pod["tolerations"], tiering.opening_tolerations(tier, self.profile.settings))
            patched = False
            try:
                patched, fresh = self._tolerate(pod, missing)
            finally:
                if reserved and not patched:
                    # The place this look took is free again. (Only this look's: a PATCH refused
                    # because an earlier look's had landed, unseen in the cache yet, keeps that one.)
                    with self._lock:
                        self.tolerated[tier.cap_key].discard(key)
            if fresh is not None:
                pod = fresh  # changed under us: decide again on the pod as it is now
                continue
            self._not_waiting(key)
            if not patched:  # gone, or bound meanwhile
                return
            if decision is None:
                self.profile.repairs.labels("tolerations").inc()
                log.info("repair: pending pod %s has not the tolerations Selector %s (%s) adds at creation (admitted "
                         "while no replica answered?): added", key, selector.name, selector.policy)
                self.profile.event_later(meta, "VirtualNodeTolerationsRestored", f"Tolerations added by Selector "
                                         f"{selector.name} ({selector.policy}) at creation: the pod was admitted "
                                         "without them")
                return
            self.profile.burst_decisions.labels(decision.reason).inc()
            if tier.virtual and not selector.tiered:
                log.info("burst: pod %s is Unschedulable on normal nodes; added virtual-node tolerations "
                         "(Selector %s, %s, %s)", key, selector.name, selector.policy, decision.reason)
                self.profile.event_later(meta, "BurstToVirtualNode", f"No normal node fits; tolerations for virtual "
                                         f"nodes added by Selector {selector.name} ({decision.message})")
            else:
                log.info("tiers: pod %s is Unschedulable in the tiers open to it; tier %s opened (Selector %s, %s)",
                         key, tier.name, selector.name, decision.reason)
                self.profile.event_later(meta, "MovedToTier", f"No node of the tiers open to it fits; tier {tier.name} "
                                         f"opened by Selector {selector.name} ({decision.message})")
            return

    def _next_tier(self, key: str, pod: dict, selector, here: int, decision: timing.Decision):
        """``(tier, reserved)``: the tier the pod moves on to now (the first after ``here`` with room),
        and whether a place there was reserved for it just now; ``(None, False)``: it waits (told
        why) and is looked at again when due."""
        meta, rules = pod["metadata"], selector.tiers[here]
        if not decision.burst:
            until = timing.iso_time(decision.at)
            self._wait(key, selector, meta, f"{decision.message} (at {until} unless a node takes it first)",
                       event_key=f"{decision.reason}@{until}")
            delay = decision.at - self.clock()
            if rules.wait_for_autoscaler:  # the autoscaler may speak before then
                delay = min(delay, AUTOSCALER_POLL_SECONDS)
            self.queue.add_after(key, delay)
            return None, False
        full = []
        for tier in selector.tiers[here + 1:]:
            if tier.max_pods is None:
                return tier, False
            with self._lock:  # counted and reserved at once: two workers never take the last place
                tolerated = self.tolerated.setdefault(tier.cap_key, set())
                if self.profile.virtual.count(tier.cap_key) + len(tolerated - {key}) < tier.max_pods:
                    reserved = key not in tolerated
                    tolerated.add(key)
                    return tier, reserved
            full.append(tier)  # full: passed over (fenced, so the scheduler cannot use it either)
        # Held until a place comes free (on_virtual_pod), or looked at again.
        self.profile.cap_denials.labels(selector.name, "burst").inc()
        if selector.tiered:
            message = "every later tier is full (" + ", ".join(f"{t.name} maxPods {t.max_pods}" for t in full) + ")"
        else:
            message = f"maxVirtualPods {full[-1].max_pods} reached"
        self._wait(key, selector, meta, f"{message} (when one of its pods there goes, unless a node takes it first)",
                   event_key="cap@" + ",".join(str(t.max_pods) for t in full))
        self.queue.add_after(key, 30.0)
        return None, False

    def _tolerate(self, pod: dict, missing: list) -> Tuple[bool, Optional[dict]]:
        """Add ``missing`` to the pod's tolerations if it is unchanged since cached. Returns whether
        it did, and the pending pod as it is now when it changed meanwhile (to decide again)."""
        meta = pod["metadata"]
        path = object_path("v1", "pods", meta["name"], meta["namespace"])
        patch = [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
                 {"op": "test", "path": "/spec/nodeName", "value": None},
                 {"op": "test", "path": "/spec/tolerations", "value": list(pod["tolerations"]) or None},
                 {"op": "add", "path": "/spec/tolerations", "value": list(pod["tolerations"]) + missing}]
        try:
            self.profile.kube.patch(path, patch, content_type=JSON_PATCH)
        except ApiError as exc:
            if exc.status == 404:
                self.actions.labels("gone").inc()
                return False, None
            if exc.status not in (409, 422):
                raise
            self.actions.labels("conflict").inc()
            try:
                fresh = self.profile.kube.get(path)
            except ApiError as exc2:
                if exc2.status == 404:
                    return False, None
                raise
            return False, (None if (fresh.get("spec") or {}).get("nodeName") else strip_pod(fresh))
        self.actions.labels("patched").inc()
        return True, None

    def decide(self, pod: dict, tier, since: Optional[float] = None) -> timing.Decision:
        """Whether the pod moves on from ``tier`` now, by its rules (burstAfter, waitForAutoscaler, maxWait)."""
        since = since or pod.get("unschedulableSince") or self.clock()
        signal = self.autoscaler_signal(pod, since) if tier.wait_for_autoscaler else None
        return timing.decide(self.clock(), since, tier, signal, self.profile.settings.default_max_wait)

    def autoscaler_signal(self, pod: dict, since: float) -> Optional[timing.Signal]:
        """What autoscalers said about this pod: its Events, read from the API server each time."""
        meta = pod["metadata"]
        try:
            events = self.profile.kube.get(object_path("v1", "events", namespace=meta["namespace"]),
                                           fieldSelector=f"involvedObject.uid={meta['uid']}").get("items") or []
        except ApiError as exc:
            log.warning("could not read the events of pod %s/%s: %s", meta["namespace"], meta["name"], exc)
            events = []
        return timing.autoscaler_signal(events, self.profile.settings.autoscaler_rules, since)

    def waiting_count(self, selector: str) -> int:
        return len(self.waiting.get(selector, ()))

