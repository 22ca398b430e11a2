"""Pods on virtual nodes without their Selector's labels get them (leader only).

A pod bound to a virtual node gets its Selector's labels once the binding is stored
(binding_labels.py), from memory: a replica killed in that moment, or an API server away for
longer than the labeller waits, loses them; a binding made while no replica answered (the
webhook's failure policy is Ignore) never had them. Without the Selector's label a pod is
invisible to the caps, the Selector's status and drain-back. So every ``labelSweepInterval``, for
each virtual node, the pods on it without the label are listed (one LIST a node, by field and
label selector), and each one that a binding put there and a Selector matches now is labelled as
that binding would have been, through the same labeller.

A pod created with ``spec.nodeName`` of a virtual node gets its effect at creation like a bound
one at binding; one admitted while no replica answered is labelled here the same way.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterator

from framework import ApiError, list_pages
from plugins.eci_profile import tiers as tiering, timing
from plugins.eci_profile.cap import SELECTOR_LABEL, counts
from plugins.eci_profile.profile import NODES, EciProfile, left_alone, strip_virtual_pod

log = logging.getLogger("admission_host.eci_profile.label_sweep")

PAGE = 500


class LabelSweepController:
    name = "eci-profile-label-sweep"

    def __init__(self, profile: EciProfile):
        self.profile = profile
        self.interval = profile.settings.label_sweep_interval
        self.nodes = profile.host.store(NODES)

    def run(self, stop: threading.Event) -> None:
        if self.interval and self.profile.labeler is not None:
            timing.every(self.interval, stop, self.step, self.name)

    def step(self) -> int:
        """One pass over the virtual nodes; returns how many pods were handed to the labeller."""
        handed = 0
        for node in self.nodes.list():
            meta = node["metadata"]
            if not self.profile.settings.is_virtual_node(meta["labels"]):
                continue
            try:
                for pod in self.unlabelled(meta["name"]):
                    handed += self.relabel(pod, meta["name"])
            except ApiError as exc:
                log.warning("could not list the pods on virtual node %s: %s", meta["name"], exc)
        return handed

    def unlabelled(self, node: str) -> Iterator[dict]:
        return list_pages(self.profile.kube, "/api/v1/pods", PAGE, fieldSelector=f"spec.nodeName={node}",
                          labelSelector=f"!{SELECTOR_LABEL}")

    def relabel(self, pod: dict, node: str) -> int:
        meta = pod.get("metadata") or {}
        # Only pods the cap would count (not being deleted, not finished) are worth labelling.
        if not counts(strip_virtual_pod(pod)) or left_alone(pod):
            return 0
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        selector = self.profile.resolve(pod, namespace).selector
        if selector is None:
            return 0
        index = tiering.node_tier(selector.tiers, self.profile.node_labels(node), True)
        annotations, labels = self.profile.placed_effect(selector, index, True, meta.get("labels") or {})
        have = meta.get("annotations") or {}
        annotations = {k: v for k, v in annotations.items() if k not in have}
        added = sorted(labels) + sorted(annotations)
        log.info("pod %s/%s on virtual node %s has no label of Selector %s: adding %s", namespace, name, node,
                 selector.name, ", ".join(added))
        self.profile.labeler.label(namespace, name, meta.get("uid") or "", node, labels, annotations)
        self.profile.repairs.labels("effect").inc()
        self.profile.event_later(meta, "VirtualNodeEffectRestored", f"Selector {selector.name}'s labels and "
                                 f"annotations added after the pod was bound to virtual node {node}: {', '.join(added)}")
        return 1
