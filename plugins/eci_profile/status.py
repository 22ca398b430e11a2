"""Report each Selector on its status (leader only): validity (condition ``Valid``, and a Warning
Event when invalid), the policy in words, its pods on virtual nodes against the cap, its pods per
tier against each tier's cap (spec.tiers), and its pods waiting to burst; ``kubectl get
selectors`` shows them.
"""

from __future__ import annotations

import logging
import threading
import time

from framework import ApiError, WorkQueue
from plugins.eci_profile import timing
from plugins.eci_profile.profile import SELECTORS, VIRTUAL_PODS, EciProfile

log = logging.getLogger("admission_host.eci_profile.status")

STATUS_PATH = "/apis/eci.aliyun.com/v1/selectors/{name}/status"
COUNTS_EVERY = 1.0  # seconds: how long a change of a Selector's counts may wait for the next ones


def desired_condition(entry: dict) -> dict:
    if entry["error"]:
        return {"type": "Valid", "status": "False", "reason": "InvalidSpec", "message": entry["error"]}
    return {"type": "Valid", "status": "True", "reason": "Compiled", "message": "used for matching"}


class SelectorStatusController:
    name = "eci-profile-selector-status"

    def __init__(self, profile: EciProfile, waiting_count=lambda selector: 0):
        self.profile = profile
        self.store = profile.host.store(SELECTORS)
        self.queue = WorkQueue(self.name, metrics=profile.host.metrics)
        self.waiting_count = waiting_count
        self.written: dict = {}  # name -> (resourceVersion patched, counts written)
        self.store.add_handler(self.on_selector)
        profile.host.store(VIRTUAL_PODS).add_handler(self.on_virtual_pod)

    def on_virtual_pod(self, event, old, new) -> None:
        # A burst changes the counts with every pod: one status write a second per Selector, not one a pod.
        for name in {p["selector"] for p in (old, new) if p is not None}:
            self.queue.add_after(name, COUNTS_EVERY)

    def on_selector(self, event, old, new) -> None:
        if new is not None:
            self.queue.add([new["metadata"]["name"]])

    def run(self, stop: threading.Event) -> None:
        self.queue.add(self.store.keys())
        self.queue.run(stop, self.reconcile)

    def reconcile(self, name: str) -> None:
        entry = self.store.get(name)
        if entry is None:
            return
        meta = entry["metadata"]
        want = desired_condition(entry)
        status = entry.get("status") or {}
        counts = self.counts(entry)
        if self.written.get(name) == (meta.get("resourceVersion"), counts):
            return  # patched already; the watch has not brought it back yet
        have = next((c for c in status.get("conditions") or () if c.get("type") == "Valid"), {})
        if (all(have.get(k) == want[k] for k in ("status", "reason", "message"))
                and status.get("observedGeneration") == meta.get("generation")
                and all(status.get(k) == v for k, v in counts.items())):
            return
        want["lastTransitionTime"] = (have.get("lastTransitionTime") if have.get("status") == want["status"] else
                                      timing.iso_time(time.time()))
        body = {"status": {"observedGeneration": meta.get("generation"), "conditions": [want], **counts}}
        try:
            self.profile.kube.patch(STATUS_PATH.format(name=name), body)
        except ApiError as exc:
            if exc.status != 404:
                log.warning("could not update the status of Selector %s: %s", name, exc)
            return
        before = self.written.get(name, (None, {}))[1].get("overCap", 0)
        self.written[name] = (meta.get("resourceVersion"), counts)
        if counts.get("overCap") and not before:
            sel = entry["selector"]
            what = (f"{counts['overCap']} pods past their tiers' maxPods ({counts['tiers']})" if sel.tiered else
                    f"{counts['virtualPods']} pods on virtual nodes, {counts['overCap']} past maxVirtualPods "
                    f"{sel.max_virtual_pods}")
            self.profile.event({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "name": name,
                                "uid": meta.get("uid") or ""}, "VirtualPodCapExceeded",
                               what + (": the newest are evicted (capEnforcement: Evict)" if sel.cap_enforcement ==
                                       "Evict" else "; new bindings wait until it is back within"), "Warning")
        if entry["error"]:
            self.profile.event({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "name": name,
                                "uid": meta.get("uid") or ""}, "InvalidSelector",
                               f"Selector ignored: {entry['error']}", "Warning")

    def counts(self, entry: dict) -> dict:
        sel = entry["selector"]
        if sel is None:
            return {}
        counts = {"policy": sel.describe_policy(), "waitingPods": self.waiting_count(sel.name)}
        over, tiers = 0, []
        for tier in sel.tiers:
            if not tier.counted:
                continue  # a policy's normal nodes: its pods there are not labelled, not counted
            used, cap = self.profile.virtual.count(tier.cap_key), tier.max_pods
            shown = f"{used}/{cap}" if cap is not None else str(used)
            tiers.append({"name": tier.name, "pods": used, **({"maxPods": cap} if cap is not None else {})})
            over += max(0, used - cap) if cap is not None else 0
            if tier.virtual:
                counts.update(virtualPods=used, virtual=shown)
        counts.setdefault("virtualPods", 0)
        counts.setdefault("virtual", "0")
        counts["tierPods"] = tiers
        counts["tiers"] = ",".join(f"{t['name']}={t['pods']}" + (f"/{t['maxPods']}" if "maxPods" in t else "")
                                   for t in tiers)
        if any(t.max_pods is not None for t in sel.tiers):
            counts["overCap"] = over
        return counts
