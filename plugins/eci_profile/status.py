"""Report each Selector's validity on its status (condition ``Valid``) and, when invalid, with a
Warning Event: an admin sees at ``kubectl get``/``describe`` why a Selector does nothing (leader only).
"""

from __future__ import annotations

import datetime
import logging
import threading

from framework import ApiError, WorkQueue
from plugins.eci_profile.profile import SELECTORS, EciProfile

log = logging.getLogger("admission_host.eci_profile.status")

STATUS_PATH = "/apis/eci.aliyun.com/v1/selectors/{name}/status"


def desired_condition(entry: dict) -> dict:
    if entry["error"]:
        return {"type": "Valid", "status": "False", "reason": "InvalidSpec", "message": entry["error"]}
    return {"type": "Valid", "status": "True", "reason": "Compiled", "message": "used for matching"}


class SelectorStatusController:
    name = "eci-profile-selector-status"

    def __init__(self, profile: EciProfile):
        self.profile = profile
        self.store = profile.host.store(SELECTORS)
        self.queue = WorkQueue(self.name)
        self.store.add_handler(self.on_selector)

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
        have = next((c for c in status.get("conditions") or () if c.get("type") == "Valid"), {})
        if (all(have.get(k) == want[k] for k in ("status", "reason", "message"))
                and status.get("observedGeneration") == meta.get("generation")):
            return
        want["lastTransitionTime"] = (have.get("lastTransitionTime") if have.get("status") == want["status"] else
                                      datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        body = {"status": {"observedGeneration": meta.get("generation"), "conditions": [want]}}
        try:
            self.profile.kube.patch(STATUS_PATH.format(name=name), body)
        except ApiError as exc:
            if exc.status != 404:
                log.warning("could not update the status of Selector %s: %s", name, exc)
            return
        if entry["error"]:
            self.profile.event({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "name": name,
                                "uid": meta.get("uid") or ""}, "InvalidSelector",
                               f"Selector ignored: {entry['error']}", "Warning")
