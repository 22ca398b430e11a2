"""Drain-back (leader only): pods a Selector sent to virtual nodes go back to normal nodes once
one has room for them, by eviction, so PodDisruptionBudgets hold them back where they must. With
``spec.tiers``: pods in a later tier go back to the earliest tier with room (its cap, and a node).

A pod is evicted when it has run on a virtual node for the Selector's ``drainBack.after``, is
owned by a ReplicaSet or StatefulSet (something makes a replacement), and a Ready, schedulable
normal node fits its requests, nodeSelector and tolerations. At most ``maxPerMinute`` per
Selector, one pod per workload at a time; a workload whose replacement lands on a virtual node
again is left alone for a while (doubling up to an hour).

The fit needs the requests of every running pod. They are summed per node from a watch of its
own that runs only while some Selector asks for drain-back, and keeps three numbers per pod.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from framework import Reflector, Watch
from plugins.eci_profile import tiers as tiering, timing
from plugins.eci_profile.profile import NODES, SELECTORS, VIRTUAL_PODS, EciProfile
from plugins.eci_profile.resources import requests_of

log = logging.getLogger("admission_host.eci_profile.drain")

WORKLOADS = ("ReplicaSet", "StatefulSet")
BACKOFF_START, BACKOFF_MAX = 300.0, 3600.0
CLAIM_SECONDS = 60.0


class NodeUsage:
    """Requests of running pods summed per node: the store of the drain-back watch.

    Keeps ``key -> (node, cpu, memory)`` and the sums, nothing else of the pods."""

    def __init__(self):
        self._pods: Dict[str, Tuple[str, int, int]] = {}
        self._nodes: Dict[str, List[int]] = collections.defaultdict(lambda: [0, 0, 0])
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self.resource_version = ""

    @staticmethod
    def transform(obj: dict) -> dict:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        # Node names repeat for every pod on the node: one string each, not one per pod.
        return {"k": f"{meta.get('namespace')}/{meta.get('name')}", "n": sys.intern(spec.get("nodeName") or ""),
                "r": requests_of(spec)}

    def _add(self, value: Tuple[str, int, int], sign: int) -> None:
        node = self._nodes[value[0]]
        node[0] += sign * value[1]
        node[1] += sign * value[2]
        node[2] += sign

    def upsert(self, obj: dict) -> None:
        value = (obj["n"], *obj["r"])
        with self._lock:
            old = self._pods.get(obj["k"])
            if old is not None:
                self._add(old, -1)
            self._pods[obj["k"]] = value
            self._add(value, 1)

    def delete(self, key: str) -> None:
        with self._lock:
            old = self._pods.pop(key, None)
            if old is not None:
                self._add(old, -1)

    def replace(self, objects: Iterable[dict], resource_version: str = "") -> None:
        with self._lock:
            self._pods, self._nodes = {}, collections.defaultdict(lambda: [0, 0, 0])
        for obj in objects:
            self.upsert(obj)
        self.resource_version = resource_version
        self._synced.set()

    def used(self, node: str) -> Tuple[int, int, int]:
        cpu, mem, pods = self._nodes.get(node, (0, 0, 0))
        return cpu, mem, pods

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def __len__(self) -> int:
        return len(self._pods)


RUNNING_PODS = Watch(name="eci-drain-back-running-pods", resource="pods", kind="Pod",
                     field_selector="spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed",
                     transform=NodeUsage.transform)


def tolerates(tolerations: Iterable[Mapping], taint: Mapping) -> bool:
    for t in tolerations or ():
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


class DrainBackController:
    name = "eci-profile-drain-back"

    def __init__(self, profile: EciProfile, clock: Callable[[], float] = time.time, interval: float = 5.0):
        self.profile = profile
        self.clock = clock
        self.interval = interval
        self.selectors = profile.host.store(SELECTORS)
        self.virtual = profile.host.store(VIRTUAL_PODS)
        self.nodes = profile.host.store(NODES)
        self.usage: Optional[NodeUsage] = None
        self._reflector: Optional[Reflector] = None
        self.budget = timing.PerMinute(0, clock)  # each Selector's drainBack.maxPerMinute
        self._inflight: Dict[str, Tuple[str, float]] = {}  # workload uid -> (pod key, when evicted)
        self._backoff: Dict[str, Tuple[float, float]] = {}  # workload uid -> (until, last delay)
        # Room promised to evicted pods' replacements until they show up in the usage (CLAIM_SECONDS).
        self._claims: List[Tuple[float, str, int, int]] = []  # (until, node, cpu, memory)
        self.drained = profile.drain_backs

    # -- the loop --------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.step()
                except Exception:
                    log.exception("drain-back pass failed")
                stop.wait(self.interval)
        finally:
            self._stop_watch()

    def wanted(self) -> list:
        return [e["selector"] for e in self.selectors.list()
                if e.get("selector") is not None and e["selector"].drain_after is not None]

    def step(self) -> int:
        """One pass: evict what may go back now. Returns the number of pods evicted."""
        selectors = self.wanted()
        if not selectors:
            self._stop_watch()
            return 0
        if not self._start_watch():
            return 0
        free = self.free_capacity()
        evicted = 0
        for sel in sorted(selectors, key=lambda s: s.name):
            evicted += self.drain(sel, free)
        return evicted

    def _start_watch(self) -> bool:
        if self.usage is None:
            self.usage = NodeUsage()
            if self.profile.kube is not None:
                self._reflector = Reflector(self.profile.kube, RUNNING_PODS, self.usage,
                                            metrics=self.profile.host.metrics)
                self._reflector.start()
        return self.usage.has_synced()

    def _stop_watch(self) -> None:
        if self._reflector is not None:
            self._reflector.stop()
        self._reflector, self.usage = None, None  # what it held goes with it

    # -- capacity ----------------------------------------------------------------------------------
    def free_capacity(self) -> Dict[str, dict]:
        """Nodes a pod may go to, with what is left on each."""
        now = self.clock()
        self._claims = [c for c in self._claims if c[0] > now]
        free = {}
        for node in self.nodes.list():
            fit = node.get("fit")
            labels = node["metadata"]["labels"]
            if not fit or not fit["ready"] or fit["unschedulable"]:
                continue
            cpu, mem, pods = self.usage.used(node["metadata"]["name"])
            for until, claimed, c, m in self._claims:
                if claimed == node["metadata"]["name"]:
                    cpu, mem, pods = cpu + c, mem + m, pods + 1
            free[node["metadata"]["name"]] = {"cpu": fit["cpu"] - cpu, "memory": fit["memory"] - mem,
                                              "pods": fit["pods"] - pods, "labels": labels, "taints": fit["taints"],
                                              "virtual": self.profile.settings.is_virtual_node(labels)}
        return free

    @staticmethod
    def fits(pod: dict, node: dict, opened: Iterable[Mapping] = ()) -> bool:
        """Whether the node has room for the pod, matches its nodeSelector, and has no taint that its
        tolerations (and ``opened``: those of the tier it would go back to) do not tolerate."""
        cpu, mem = pod["requests"]
        if node["pods"] < 1 or node["cpu"] < cpu or node["memory"] < mem:
            return False
        if any(node["labels"].get(k) != v for k, v in (pod.get("nodeSelector") or {}).items()):
            return False
        tolerations = list(pod.get("tolerations") or ()) + list(opened)
        return all(tolerates(tolerations, t) for t in node["taints"])

    # -- one Selector --------------------------------------------------------------------------------
    def drain(self, sel, free: Dict[str, dict]) -> int:
        """Pods in a later tier (a policy's: the virtual nodes) back to the earliest with room, the
        latest tier first."""
        now = self.clock()
        budget = self.budget.left(sel.name, sel.drain_per_minute)
        evicted, let_in = 0, collections.Counter()  # tier index -> pods sent back there this pass
        for index in range(len(sel.tiers) - 1, 0, -1):
            tier = sel.tiers[index]
            if not tier.counted:
                continue  # a policy's normal nodes: nothing is counted there
            pods = sorted(self.profile.virtual.pods(tier.cap_key), key=lambda p: (p.get("startTime") or "", _key(p)))
            self._notice_returns(pods)
            for pod in pods:
                if evicted >= budget:
                    return evicted
                if not self.may_go_back(pod, sel, now):
                    continue
                found = self.target(pod, sel, index, free, let_in)
                if found is None:
                    continue
                back, target = found
                if self.evict(pod, sel, target, tier, sel.tiers[back]):
                    node = free[target]
                    node["cpu"] -= pod["requests"][0]
                    node["memory"] -= pod["requests"][1]
                    node["pods"] -= 1
                    let_in[back] += 1
                    self._claims.append((now + CLAIM_SECONDS, target, *pod["requests"]))
                    self.budget.used(sel.name)
                    self._inflight[pod["owner"]["uid"]] = (_key(pod), now)
                    evicted += 1
        return evicted

    def target(self, pod: dict, sel, index: int, free: Dict[str, dict], let_in) -> Optional[Tuple[int, str]]:
        """The earliest tier before ``index`` with room for the pod (its cap, and a node that fits
        it), and that node."""
        for back in range(index):
            tier = sel.tiers[back]
            if tier.max_pods is not None and self.profile.virtual.count(tier.cap_key) + let_in[back] >= tier.max_pods:
                continue
            opened = tiering.opening_tolerations(tier, self.profile.settings)
            for name, node in sorted(free.items()):
                if (tiering.node_tier(sel.tiers, node["labels"], node["virtual"]) == back
                        and self.fits(pod, node, opened)):
                    return back, name
        return None

    def may_go_back(self, pod: dict, sel, now: float) -> bool:
        owner = pod.get("owner")
        if not owner or owner.get("kind") not in WORKLOADS or pod.get("phase") != "Running":
            return False
        if not pod.get("startTime") or now - timing.parse_time(pod["startTime"]) < sel.drain_after:
            return False
        if self._backoff.get(owner["uid"], (0.0, 0.0))[0] > now:
            return False
        busy = self._inflight.get(owner["uid"])
        if busy is not None:  # one pod per workload at a time: until the evicted one is gone
            if self.virtual.get(busy[0]) is not None and now - busy[1] < 300:
                return False
            del self._inflight[owner["uid"]]
        return True

    def _notice_returns(self, pods: List[dict]) -> None:
        """A replacement that landed in the same later tier again: leave that workload alone for a while."""
        for pod in pods:
            owner = pod.get("owner") or {}
            busy = self._inflight.get(owner.get("uid"))
            if busy is None or _key(pod) == busy[0] or not pod.get("createdAt"):
                continue
            if timing.parse_time(pod["createdAt"]) >= busy[1] - 1:
                last = self._backoff.get(owner["uid"], (0.0, BACKOFF_START / 2))[1]
                delay = min(BACKOFF_MAX, last * 2)
                self._backoff[owner["uid"]] = (self.clock() + delay, delay)
                del self._inflight[owner["uid"]]
                log.info("drain-back: the replacement of %s %s is in the same tier again; retrying in %.0f s",
                         owner.get("kind"), owner.get("name"), delay)

    def evict(self, pod: dict, sel, target: str, tier, back) -> bool:
        meta = pod["metadata"]
        outcome = self.profile.evict(meta)
        if outcome == "blocked":  # a PodDisruptionBudget says not now
            self.drained.labels(sel.name, "blocked").inc()
        if outcome != "evicted":
            return False
        self.drained.labels(sel.name, "evicted").inc()
        log.info("drain-back: evicted %s/%s from node %s, tier %s (Selector %s); %s of tier %s has room",
                 meta["namespace"], meta["name"], pod["node"], tier.name, sel.name, target, back.name)
        self.profile.event_later(meta, "DrainBack", f"Evicted from tier {tier.name} (node {pod['node']}) by Selector "
                                 f"{sel.name}: node {target} of tier {back.name} has room for it" if sel.tiered else
                                 f"Evicted from virtual node {pod['node']} by Selector {sel.name}: normal node "
                                 f"{target} has room for it")
        return True


def _key(pod: dict) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
