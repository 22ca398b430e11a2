"""``capEnforcement: Evict`` (leader only): a Selector over its ``maxVirtualPods`` — the cap was
lowered, or pods were bound while no replica answered (failure policy Ignore) — is brought back
within it by evicting its newest pods on virtual nodes.

Only pods a ReplicaSet or StatefulSet will replace are evicted; the replacement comes back
through the webhook, where the cap holds. Evictions go through the Eviction API, so
PodDisruptionBudgets decide, and at most ``EVICTIONS_PER_MINUTE`` per Selector.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from plugins.eci_profile import timing
from plugins.eci_profile.drain import WORKLOADS
from plugins.eci_profile.profile import SELECTORS, EciProfile

log = logging.getLogger("admission_host.eci_profile.cap_enforcement")

EVICTIONS_PER_MINUTE = 10  # per Selector, for this and the misplaced pods' evictions


class EvictingController:
    """The leader's rounds over the Selectors, every ``interval`` seconds, evicting pods with a
    budget per Selector; subclasses say what a round does (``step``)."""

    name = ""
    interval = 5.0

    def __init__(self, profile: EciProfile, clock: Callable[[], float] = time.monotonic,
                 interval: Optional[float] = None):
        self.profile = profile
        self.interval = interval or self.interval
        self.selectors = profile.host.store(SELECTORS)
        self.budget = timing.PerMinute(EVICTIONS_PER_MINUTE, clock)

    def run(self, stop: threading.Event) -> None:
        if self.profile.kube is not None:
            timing.every(self.interval, stop, self.step, self.name)

    def step(self) -> int:
        raise NotImplementedError


class CapEnforcer(EvictingController):
    name = "eci-profile-cap-enforcement"

    def step(self) -> int:
        """One round over the Selectors that evict; returns the pods evicted."""
        evicted = 0
        for entry in self.selectors.list():
            sel = entry.get("selector")
            if sel is None or sel.cap_enforcement != "Evict":
                continue
            for tier in sel.tiers:  # a policy's: the virtual nodes and maxVirtualPods
                if tier.max_pods is None:
                    continue
                pods = self.profile.virtual.pods(tier.cap_key)
                over = len(pods) - tier.max_pods
                if over > 0:
                    evicted += self.bring_back(sel, tier, pods, over)
        return evicted

    def bring_back(self, sel, tier, pods: list, over: int) -> int:
        budget = min(over, self.budget.left(sel.name))
        # Newest first: the pods that came last, past the cap (RFC 3339 times sort as strings).
        candidates = sorted((p for p in pods if (p.get("owner") or {}).get("kind") in WORKLOADS),
                            key=lambda p: (p.get("startTime") or p.get("createdAt") or "", p["metadata"]["name"]),
                            reverse=True)
        evicted = 0
        for pod in candidates:
            if evicted >= budget:
                break
            meta = pod["metadata"]
            outcome = self.profile.evict(meta)
            self.profile.cap_evictions.labels(sel.name, outcome).inc()
            if outcome != "evicted":
                continue
            evicted += 1
            self.budget.used(sel.name)
            cap = (f"maxPods {tier.max_pods} of tier {tier.name}" if sel.tiered else
                   f"maxVirtualPods {tier.max_pods}")
            log.info("cap enforcement: evicted %s/%s from node %s (Selector %s is %d past %s)",
                     meta["namespace"], meta["name"], pod["node"], sel.name, over, cap)
            self.profile.event_later(meta, "VirtualPodCapEnforced", f"Evicted from {'' if sel.tiered else 'virtual '}"
                                     f"node {pod['node']}: Selector {sel.name} had {over} pods past {cap}")
        return evicted
