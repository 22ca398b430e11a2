"""Leader election on a ``coordination.k8s.io/v1`` Lease, the way client-go does it.

Expiry is judged by this replica's own clock from when it last saw the lease change, never by
comparing the holder's timestamps with ours, so clock skew between nodes does not matter.
Updates carry the lease's resourceVersion: two replicas can never both win the same round.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Callable, Optional

from framework.kube.client import ApiError, KubeClient

log = logging.getLogger(__name__)


def _now_micro() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str, *,
                 on_started: Callable[[], None], on_stopped: Callable[[], None],
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0):
        self.client = client
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.namespace, self.name, self.identity = namespace, name, identity
        self.on_started, self.on_stopped = on_started, on_stopped
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.is_leader = False
        self.stop_event = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self._observed: tuple = ()
        self._observed_at = 0.0
        self._last_renew = 0.0
        # A request must not outlast the renew deadline, or a hung call would keep a lost lease.
        self._timeout = max(1.0, renew_deadline / 2)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="leader-election", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                acquired = self.try_acquire_or_renew()
            except Exception as exc:  # the API server may be away; keep trying
                log.warning("leader election: %s", exc)
                acquired = False
            now = time.monotonic()
            if acquired:
                self._last_renew = now
                if not self.is_leader:
                    self._set_leader(True)
            elif self.is_leader and now - self._last_renew > self.renew_deadline:
                log.warning("leader election: could not renew lease %s/%s within %.0fs; stepping down",
                            self.namespace, self.name, self.renew_deadline)
                self._set_leader(False)
            self.stop_event.wait(self.retry_period)

    def _set_leader(self, leader: bool) -> None:
        self.is_leader = leader
        log.info("leader election: %s %s lease %s/%s", self.identity, "acquired" if leader else "lost",
                 self.namespace, self.name)
        try:
            (self.on_started if leader else self.on_stopped)()
        except Exception:
            log.exception("leader election callback failed")

    def try_acquire_or_renew(self) -> bool:
        now = _now_micro()
        try:
            lease = self.client.get(f"{self.path}/{self.name}", timeout=self._timeout)
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
            try:
                self.client.post(self.path, body, timeout=self._timeout)
            except ApiError as exc2:
                if exc2.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            return False
        spec = dict(spec)
        if holder != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=self.identity, renewTime=now, leaseDurationSeconds=int(self.lease_duration))
        lease["spec"] = spec
        try:
            self.client.put(f"{self.path}/{self.name}", lease, timeout=self._timeout)
        except ApiError as exc:
            if exc.status == 409:  # someone else updated it first
                return False
            raise
        return True

    def stop(self, release: bool = True) -> None:
        """Stop campaigning; give the lease up at once so another replica need not wait it out."""
        self.stop_event.set()
        if self.thread:
            self.thread.join(timeout=5)
        if self.is_leader:
            self._set_leader(False)
            if release:
                try:
                    lease = self.client.get(f"{self.path}/{self.name}", timeout=self._timeout)
                    if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                        lease["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=_now_micro())
                        self.client.put(f"{self.path}/{self.name}", lease, timeout=self._timeout)
                except Exception as exc:
                    log.warning("leader election: could not release the lease: %s", exc)
