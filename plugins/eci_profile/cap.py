"""A Selector's pods on virtual nodes, counted from a cache, for ``maxVirtualPods``.

The host labels each pod it binds to a virtual node with ``eci.aliyun.com/selector: NAME``;
a watch on that label is the count (pods being deleted, Succeeded or Failed do not count). A
binding this replica has allowed but the watch has not shown yet is held as a reservation, so
bindings admitted in a burst are counted before their label comes back. Other replicas'
reservations are not seen: with N replicas answering at once the cap can be passed by at most
the bindings in flight on the other N-1 during one watch round trip.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Tuple

SELECTOR_LABEL = "eci.aliyun.com/selector"
SELECTOR_INDEX = "selector"


def counts(pod: dict) -> bool:
    return not pod.get("deleting") and pod.get("phase") not in ("Succeeded", "Failed")


class VirtualPods:
    def __init__(self, store, clock: Callable[[], float] = time.monotonic, hold: float = 30.0):
        self.store = store
        self.clock = clock
        self.hold = hold  # a reservation not confirmed by the watch within this long is dropped
        self._reserved: Dict[str, Dict[str, float]] = {}
        self._lock = threading.Lock()

    def pods(self, selector: str) -> list:
        return [p for p in self.store.by_index(SELECTOR_INDEX, selector) if counts(p)]

    def count(self, selector: str) -> int:
        """Pods of the Selector on virtual nodes, as cached, plus bindings allowed and not yet seen."""
        with self._lock:
            return self._count(selector)[0]

    def _count(self, selector: str) -> Tuple[int, Dict[str, float], set]:
        cached = self.store.by_index(SELECTOR_INDEX, selector)
        seen = {p["metadata"]["uid"] for p in cached}
        now = self.clock()
        reserved = {uid: until for uid, until in self._reserved.get(selector, {}).items()
                    if until > now and uid not in seen}
        if reserved:
            self._reserved[selector] = reserved
        else:
            self._reserved.pop(selector, None)
        return sum(1 for p in cached if counts(p)) + len(reserved), reserved, seen

    def reserve(self, selector: str, uid: str, cap: int) -> Tuple[bool, int]:
        """Allow one more pod of ``selector`` on a virtual node if that stays within ``cap``.

        Returns ``(allowed, in use)``; in use counts the pod when it is allowed.
        """
        with self._lock:
            used, reserved, seen = self._count(selector)
            if uid in reserved or uid in seen:  # counted already (a bind tried again)
                return True, used
            if used >= cap:
                return False, used
            self._reserved.setdefault(selector, {})[uid] = self.clock() + self.hold
            return True, used + 1
