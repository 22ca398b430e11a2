"""A Selector's pods on virtual nodes, for ``maxVirtualPods``.

The host labels each pod it binds to a virtual node with ``eci.aliyun.com/selector: NAME``;
a watch on that label is the count (pods being deleted, Succeeded or Failed do not count). A
binding this replica has allowed but the watch has not shown yet is held as a reservation, so
bindings admitted in a burst are counted before their label comes back.

Replicas see each other's bindings through :class:`CapRecords`: per capped Selector, a
ConfigMap in the host's namespace lists the pods any replica allowed onto virtual nodes, and a
binding is allowed only once it is written there, with the ConfigMap's resourceVersion as a
precondition. Two replicas can never both take the last place: one of their writes fails with
a conflict, and that replica counts again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Callable, Dict, Optional, Tuple

import orjson

from framework import ApiError, object_path
from plugins.eci_profile import timing
from plugins.eci_profile.tiers import record_suffix

log = logging.getLogger("admission_host.eci_profile.cap")

SELECTOR_LABEL = "eci.aliyun.com/selector"
SELECTOR_INDEX = "selector"
RECORD_LABEL = "eci.aliyun.com/cap-record"  # "true": the leader lists them to clean up
RECORD_ANNOTATION = "eci.aliyun.com/selector"  # whose record it is
RECORD_KEY = "pods"
# A recorded pod counts this long whatever the caches say: its binding may be stored and its label
# not written yet (seconds under load), or another replica's cache may not show it yet. After that
# it stays recorded only while it is pending; on a virtual node, every replica's cache counts it.
RECORD_GRACE_SECONDS = 30.0


class RecordBusy(Exception):
    """The record could not be written before the request's deadline (other replicas kept winning)."""


def record_name(key: str) -> str:
    """The ConfigMap of a cap's record: a Selector's (names of both are DNS subdomains, up to 253),
    or a tier's (``SELECTOR/TIER``: by hash)."""
    name = f"eci-cap-{record_suffix(key)}"
    return name if len(name) <= 253 else "eci-cap-" + hashlib.sha256(key.encode()).hexdigest()


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

    def reserved(self, selector: str, uid: str) -> None:
        """Count ``uid`` from now on, until the watch shows it (allowed through :class:`CapRecords`)."""
        with self._lock:
            self._reserved.setdefault(selector, {})[uid] = self.clock() + self.hold


class CapRecords:
    """The pods every replica allowed onto virtual nodes, per capped Selector, kept in the API server.

    A record maps a pod's uid to ``[namespace/name, when allowed]`` (epoch seconds). The count is
    the recorded pods still counting (:meth:`live`) together with the cached virtual pods (a pod
    bound while no replica answered is only there). ``pending(key, uid)`` tells whether a pod is
    still waiting to be bound, from the pending pods' cache.
    """

    def __init__(self, kube, namespace: str, virtual: VirtualPods, pending: Callable[[str, str], bool],
                 clock: Callable[[], float] = time.time):
        self.kube = kube
        self.namespace = namespace
        self.virtual = virtual
        self.pending = pending
        self.clock = clock
        # One write at a time per Selector in this replica: its threads queue here rather than
        # race each other at the API server, so a conflict means another replica wrote.
        self._locks: Dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock(self, selector: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(selector, threading.Lock())

    def path(self, selector: str = "") -> str:
        return object_path("v1", "configmaps", record_name(selector) if selector else "", self.namespace)

    def live(self, record: Dict[str, list]) -> Dict[str, list]:
        """The recorded pods to keep: recent ones, and older ones still pending (their binding may
        come yet). The rest are gone, or on virtual nodes, where the caches count them."""
        now = self.clock()
        return {uid: entry for uid, entry in record.items()
                if now - entry[1] < RECORD_GRACE_SECONDS or self.pending(entry[0], uid)}

    def in_use(self, selector: str, pods: Dict[str, list]) -> Tuple[Dict[str, list], set]:
        """The record's pods to keep (:meth:`live`), and the uids that count: those and the
        Selector's pods on virtual nodes as cached."""
        live = self.live(pods)
        return live, live.keys() | {p["metadata"]["uid"] for p in self.virtual.pods(selector)}

    def read(self, selector: str, timeout: float) -> Tuple[Optional[dict], Dict[str, list]]:
        """The record's ConfigMap (None when there is none yet) and its pods."""
        try:
            current = self.kube.get(self.path(selector), timeout=timeout)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return None, {}
        return current, self.pods_of(current)

    def pods_of(self, record: dict) -> Dict[str, list]:
        try:
            pods = orjson.loads((record.get("data") or {}).get(RECORD_KEY) or "{}")
            if isinstance(pods, dict) and all(isinstance(v, list) and len(v) == 2 for v in pods.values()):
                return pods
        except orjson.JSONDecodeError:
            pass
        log.warning("cap record %s/%s is not as written; starting it again", self.namespace,
                    record["metadata"]["name"])
        return {}

    def write(self, selector: str, current: Optional[dict], pods: Dict[str, list], timeout: float) -> None:
        """Store ``pods`` if the record is still ``current`` (a 409 ApiError otherwise)."""
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": record_name(selector), "namespace": self.namespace,
                             "labels": {RECORD_LABEL: "true"},
                             "annotations": {RECORD_ANNOTATION: selector}},
                "data": {RECORD_KEY: orjson.dumps(pods, option=orjson.OPT_SORT_KEYS).decode()}}
        if current is None:
            self.kube.post(self.path(), body, timeout=timeout)  # 409 AlreadyExists: another replica made it
        else:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.kube.put(self.path(selector), body, timeout=timeout)

    def reserve(self, selector: str, uid: str, key: str, cap: int, timeout: float) -> Tuple[bool, int]:
        """Allow ``uid`` onto a virtual node if the Selector stays within ``cap`` counting what every
        replica allowed. Returns ``(allowed, in use)``. Raises :class:`ApiError` when the record
        cannot be read or written (the caller fails open, as when no replica answers), and
        :class:`RecordBusy` when other replicas kept writing first until ``timeout``."""
        deadline = time.monotonic() + timeout
        lock = self._lock(selector)
        if not lock.acquire(timeout=timeout):
            raise RecordBusy(f"cap record of Selector {selector}: this replica's writes queued past the deadline")
        try:
            return self._reserve(selector, uid, key, cap, deadline)
        finally:
            lock.release()

    def _reserve(self, selector: str, uid: str, key: str, cap: int, deadline: float) -> Tuple[bool, int]:
        while time.monotonic() < deadline:
            left = max(0.1, deadline - time.monotonic())
            current, pods = self.read(selector, left)
            live, counted = self.in_use(selector, pods)
            if uid in counted:  # counted already (a bind tried again)
                return True, len(counted)
            if len(counted) >= cap:
                return False, len(counted)
            live[uid] = [key, int(self.clock())]
            try:
                self.write(selector, current, live, max(0.1, deadline - time.monotonic()))
            except ApiError as exc:
                if exc.status == 409:  # another replica wrote first: count again
                    continue
                raise
            return True, len(counted) + 1
        raise RecordBusy(f"cap record of Selector {selector}: other replicas kept writing first until the deadline")

    def count(self, selector: str, timeout: float) -> int:
        """What :meth:`reserve` would count now."""
        return len(self.in_use(selector, self.read(selector, timeout)[1])[1])

    def clean(self, caps: Callable[[str], Optional[int]], timeout: float = 10.0) -> int:
        """The leader's round: drop what no longer counts from each record, and delete the records
        of Selectors that are gone or no longer capped (``caps(name)``: the cap, None for none).
        Returns the records changed. A conflict leaves a record to the next round."""
        changed = 0
        listed = self.kube.get(self.path(), timeout=timeout, labelSelector=f"{RECORD_LABEL}=true")
        for item in listed.get("items") or ():
            selector = ((item.get("metadata") or {}).get("annotations") or {}).get(RECORD_ANNOTATION)
            if not selector or item["metadata"]["name"] != record_name(selector):
                continue  # not one of ours as written: leave it alone
            try:
                if caps(selector) is None:
                    self.kube.delete(self.path(selector), timeout=timeout)
                    changed += 1
                    continue
                pods = self.pods_of(item)
                live = self.live(pods)
                if live != pods:
                    self.write(selector, item, live, timeout)
                    changed += 1
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
        return changed


class CapRecordCleaner:
    """The leader drops from the caps' records what no longer counts, and deletes the records of
    Selectors that are gone or no longer capped, every ``interval`` seconds."""

    name = "eci-profile-cap-records"

    def __init__(self, records: Optional[CapRecords], selectors, interval: float = RECORD_GRACE_SECONDS):
        self.records = records
        self.selectors = selectors  # the Selectors' cache: name -> {"selector": Selector or None}
        self.interval = interval

    def cap_of(self, key: str) -> Optional[int]:
        """The cap of a record's key: a Selector's maxVirtualPods, or a tier's maxPods (``SELECTOR/TIER``)."""
        name, _, tier = key.partition("/")
        sel = (self.selectors.get(name) or {}).get("selector")
        if sel is None:
            return None
        return next((t.max_pods for t in sel.tiers if t.cap_key == key), None)

    def run(self, stop: threading.Event) -> None:
        if self.records is not None:
            timing.every(self.interval, stop, lambda: self.records.clean(self.cap_of), self.name)
