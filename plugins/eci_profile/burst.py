"""normalNodePrefer bursting: pods the scheduler cannot place on normal nodes get the
virtual-node tolerations, and the scheduler retries them at once (leader only).

Adding tolerations to an existing pod is one of the few pod spec updates the API server allows.
Each PATCH tests the pod's resourceVersion first, so a stale cache or a second replica can never
add the tolerations twice.
"""

from __future__ import annotations

import logging
import threading

from framework import JSON_PATCH, ApiError, WorkQueue, object_path
from plugins.eci_profile.profile import PENDING_PODS, SELECTORS, EciProfile, strip_pod

log = logging.getLogger("admission_host.eci_profile.burst")


class BurstController:
    name = "eci-profile-burst"

    def __init__(self, profile: EciProfile):
        self.profile = profile
        self.pods = profile.host.store(PENDING_PODS)
        self.queue = WorkQueue(self.name)
        self.active = False
        self.actions = profile.burst_actions
        self.pods.add_handler(self.on_pod)
        profile.host.store(SELECTORS).add_handler(self.on_selector)

    def on_pod(self, event, old, new) -> None:
        if self.active and new is not None and new.get("unschedulable"):
            self.queue.add([f"{new['metadata']['namespace']}/{new['metadata']['name']}"])

    def on_selector(self, event, old, new) -> None:
        if self.active:  # a Selector appeared or changed: pods waiting may now burst
            self.enqueue_unschedulable()

    def enqueue_unschedulable(self) -> None:
        self.queue.add(f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                       for p in self.pods.list() if p.get("unschedulable"))

    def run(self, stop: threading.Event) -> None:
        self.active = True
        try:
            self.enqueue_unschedulable()
            self.queue.run(stop, self.reconcile, on_error=lambda key: self.actions.labels("error").inc())
        finally:
            self.active = False

    def reconcile(self, key: str) -> None:
        pod = self.pods.get(key)
        for _ in range(3):
            if pod is None or not pod.get("unschedulable"):
                return
            meta = pod["metadata"]
            selector, _ = self.profile.resolve(pod, meta["namespace"])
            if selector is None:
                return
            policy = self.profile.policies.get(selector.policy)
            if policy is None or not policy.burst_when_unschedulable:
                return
            missing = self.profile.settings.missing_tolerations(pod["tolerations"])
            if not missing:
                return
            path = object_path("v1", "pods", meta["name"], meta["namespace"])
            patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
                     {"op": "add", "path": "/spec/tolerations", "value": list(pod["tolerations"]) + missing}]
            try:
                self.profile.kube.patch(path, patch, content_type=JSON_PATCH)
            except ApiError as exc:
                if exc.status == 404:
                    self.actions.labels("gone").inc()
                    return
                if exc.status not in (409, 422):
                    raise
                self.actions.labels("conflict").inc()
                try:  # changed under us: look again at the current pod
                    fresh = self.profile.kube.get(path)
                except ApiError as exc2:
                    if exc2.status == 404:
                        return
                    raise
                pod = strip_pod(fresh) if not (fresh.get("spec") or {}).get("nodeName") else None
                continue
            self.actions.labels("patched").inc()
            log.info("burst: pod %s is Unschedulable on normal nodes; added virtual-node tolerations "
                     "(Selector %s, normalNodePrefer)", key, selector.name)
            self.profile.event({"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                "namespace": meta["namespace"], "uid": meta.get("uid") or ""},
                               "BurstToVirtualNode",
                               f"No normal node fits; tolerations for virtual nodes added by Selector {selector.name}")
            return
