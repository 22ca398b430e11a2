"""``virtualNodeOnly: {evictFromNormalNodes: true}`` (leader only): the Selector's running pods
found on normal nodes — admitted while no replica of the host answered (failure policy Ignore),
so without the toleration and nodeSelector that fence them to virtual nodes — are evicted, so
that their ReplicaSet or StatefulSet makes new ones, which come back through the webhook.

Every 30 s, one LIST per such Selector (its objectLabels as the label selector,
running pods only); a pod is evicted when it is on a node that is not virtual, the Selector
still wins it, and a ReplicaSet or StatefulSet owns it. Through the Eviction API, so
PodDisruptionBudgets decide; at most 10 a minute per Selector (cap_enforcement.EVICTIONS_PER_MINUTE).
"""

from __future__ import annotations

import logging

from framework import ApiError
from plugins.eci_profile.cap_enforcement import EvictingController
from plugins.eci_profile.drain import WORKLOADS
from plugins.eci_profile.profile import NODES, EciProfile, left_alone

log = logging.getLogger("admission_host.eci_profile.misplaced")

class MisplacedPodEvictor(EvictingController):
    name = "eci-profile-misplaced-pods"
    interval = 30.0

    def __init__(self, profile: EciProfile, **kw):
        super().__init__(profile, **kw)
        self.nodes = profile.host.store(NODES)

    def step(self) -> int:
        """One round over the Selectors that ask for it; returns the pods evicted."""
        evicted = 0
        for entry in self.selectors.list():
            sel = entry.get("selector")
            if sel is not None and sel.policy == "virtualNodeOnly" and sel.evict_from_normal_nodes:
                try:
                    evicted += self.evict_misplaced(sel)
                except ApiError as exc:
                    log.warning("%s: Selector %s: %s", self.name, sel.name, exc)
        return evicted

    def on_normal_node(self, pod: dict) -> bool:
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        return node is not None and not self.profile.settings.is_virtual_node(node["metadata"]["labels"])

    def evict_misplaced(self, sel) -> int:
        query = {"fieldSelector": "status.phase=Running"}
        if sel.object_selector is not None and not sel.object_selector.is_empty():
            query["labelSelector"] = sel.object_selector.query()
        evicted = 0
        for pod in self.profile.kube.get("/api/v1/pods", **query).get("items") or ():
            if not self.budget.left(sel.name):
                break
            meta = pod["metadata"]
            owner = next((o for o in meta.get("ownerReferences") or () if o.get("controller")), {})
            if (meta.get("deletionTimestamp") or owner.get("kind") not in WORKLOADS or not self.on_normal_node(pod)
                    or left_alone(pod)):
                continue
            winner = self.profile.resolve(pod, meta["namespace"]).selector
            if winner is None or winner.name != sel.name:
                continue
            outcome = self.profile.evict(meta)
            if outcome != "evicted":
                continue
            evicted += 1
            self.budget.used(sel.name)
            self.profile.repairs.labels("evicted").inc()
            log.info("repair: evicted %s/%s from normal node %s: Selector %s (virtualNodeOnly) sends it to virtual "
                     "nodes", meta["namespace"], meta["name"], pod["spec"]["nodeName"], sel.name)
            self.profile.event_later(meta, "MisplacedPodEvicted", f"Evicted from normal node {pod['spec']['nodeName']}: "
                                     f"Selector {sel.name} (virtualNodeOnly) sends its pods to virtual nodes; the "
                                     "replacement comes back through the webhook")
        return evicted
