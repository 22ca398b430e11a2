"""Tiers the scheduler just found full for a workload, so that its next pods skip the failed try.

A pod moves on from a tier when the scheduler says it is Unschedulable there, and that costs the
scheduler a whole cycle, a status write and an Event per pod: in a burst of a thousand pods, twice
the cluster's own time. The pods of one workload (one controller: a ReplicaSet, a StatefulSet, a
Job) are alike, so once the scheduler found one Unschedulable in a tier that moves on at once
(no burstAfter, no autoscaler to wait for), its siblings would be too:

- a sibling created then is given the next tier at creation, with a preference for the tiers
  before it (preferred node affinity), so a node with room there still wins;
- a sibling already pending that the scheduler has not tried yet gets the next tier's tolerations
  at once, from the burst controller.

The word is believed for ``fullTierFor`` (10 s) after the newest such verdict, and forgotten at
once when a node is added or changes (room may have come with it). After that the next siblings
take the usual path, and a new verdict renews it: the scheduler is asked again every few seconds
of a long burst. Every replica keeps its own view, from the watch of pending pods they all have.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Mapping, Optional, Tuple

FULL_FOR = 10.0  # the default of the option fullTierFor


def controller_uid(meta: Mapping) -> str:
    """The uid of the object that made the pod (its controller owner), or "" for a pod of its own."""
    for owner in meta.get("ownerReferences") or ():
        if isinstance(owner, dict) and owner.get("controller"):
            return owner.get("uid") or ""
    return ""


class FullTiers:
    def __init__(self, clock: Callable[[], float] = time.monotonic, full_for: float = FULL_FOR):
        self.clock, self.full_for = clock, full_for
        self._seen: Dict[Tuple[str, int, str], float] = {}  # (Selector, tier index, controller uid) -> when
        self._newest = 0.0
        self._lock = threading.Lock()

    def saw_unschedulable(self, selector: str, tier: int, owner: str) -> bool:
        """The scheduler found a pod of ``owner`` Unschedulable in the tiers up to ``tier``; returns
        whether this is news (the tier was not known full for it)."""
        if not owner or self.full_for <= 0:
            return False
        now = self.clock()
        with self._lock:
            news = not self._fresh(selector, tier, owner, now)
            self._seen[(selector, tier, owner)] = self._newest = now
            if len(self._seen) > 10000:  # workloads come and go: forget the stale
                self._seen = {k: t for k, t in self._seen.items() if now - t < self.full_for}
        return news

    def __bool__(self) -> bool:
        """Whether any tier is believed full now (a cheap check before working out which)."""
        return bool(self._seen) and self.clock() - self._newest < self.full_for

    def full(self, selector: str, tier: int, owner: str) -> bool:
        """Whether the tiers up to ``tier`` were found full for ``owner``'s pods moments ago."""
        if not owner:
            return False
        with self._lock:
            return self._fresh(selector, tier, owner, self.clock())

    def _fresh(self, selector: str, tier: int, owner: str, now: float) -> bool:
        seen: Optional[float] = self._seen.get((selector, tier, owner))
        return seen is not None and now - seen < self.full_for

    def forget(self) -> None:
        """Room may have come (a node was added or changed): every tier must be found full again."""
        with self._lock:
            self._seen.clear()
