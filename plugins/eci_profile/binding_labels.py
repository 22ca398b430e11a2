"""The labels of a pod bound to a virtual node, added once the binding is stored, off the admission path.

Since Kubernetes 1.35 (feature PodTopologyLabelsAdmission, on by default) the API server copies a
Binding's labels onto the pod as it binds, as it always did its annotations: the labels ride on
the Binding, and the job here only looks for them in the watch of virtual pods a moment later (no
API call). When they did not come (an older API server, the feature off), it reads the pod, learns
that this API server does not copy them, and PATCHes them as below; later bindings go straight to
the PATCH.

A Binding carries annotations (the API server copies them onto the pod) but no labels, so the pod
gets the Selector's labels by PATCH. Sent while the binding is being admitted, that PATCH made the
binding wait for an API round trip, and labelled pods whose binding then failed. Here a background
thread sends it a moment after the webhook answers (the binding is stored by then, as a rule), as a
JSON patch that first tests the pod's uid and ``spec.nodeName``; when a test fails it reads the pod
to tell why, and until the pod is bound to that node tries again. The API server applies a JSON patch to the pod as it is when written, so the
node's status write right after the binding does not fail it (a resourceVersion precondition did,
hundreds of times in a burst of a thousand pods), while a pod replaced (another uid) or bound
elsewhere fails its tests (422). A pod deleted, replaced or bound elsewhere is left alone.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

from framework import JSON_PATCH, ApiError, object_path

log = logging.getLogger(__name__)

FIRST_TRY = 0.02  # seconds after the binding's admission: it is stored a moment after the webhook answers
FIRST_RETRY = 0.05  # seconds; doubled each time, up to MAX_RETRY
MAX_RETRY = 1.0
CONFIRM_AFTER = 1.0  # seconds after the binding's admission: its labels are in the watch by then, if copied
CONFIRM_LOOKS = 4  # more looks, a second apart, once the API server is known to copy them (a busy watch lags)
GIVE_UP_AFTER = 30.0  # a binding not stored by then is not coming
# PATCHes in flight at once: one at a time trailed a burst's bindings by seconds (each call waits
# for the API server, which is busiest then), and pods were Running before their labels came.
WORKERS = 4


@dataclass
class _Job:
    namespace: str
    name: str
    uid: str
    node: str
    labels: Dict[str, str]
    until: float
    delay: float = FIRST_RETRY
    annotations: Dict[str, str] = field(default_factory=dict)  # added where the pod has no such key
    conflicts: int = 0
    #: the pod had labels when admitted: PATCH before reading it (a refusal is read to tell why)
    blind: bool = False
    #: the labels rode on the Binding: look for them in the watch first
    on_binding: bool = False
    #: the next read of the pod tells whether the API server copied the Binding's labels
    learn: bool = False
    looks: int = 0  # in the watch, for labels that rode on the Binding


class BindingLabeler:
    """``label(...)`` returns at once; daemon threads do the rest, ``WORKERS`` pods at a time."""

    def __init__(self, kube, outcome: Callable[[str], None] = lambda _: None,
                 failed: Callable[[dict, str], None] = lambda pod, why: None, clock=time.monotonic,
                 seen: Callable[[str, str, str, Dict[str, str]], bool] = lambda namespace, name, uid, labels: False):
        self.kube, self.outcome, self.failed, self.clock = kube, outcome, failed, clock
        #: whether the watch shows pod (namespace, name, uid) with these labels
        self.seen = seen
        #: whether the API server copies a Binding's labels onto the pod (None: not known yet)
        self.binding_copies: Optional[bool] = None
        self._due: list = []  # (when, sequence, job)
        self._active = 0  # jobs being tried now
        self._sequence = itertools.count()
        self._wake = threading.Condition()
        self._threads: list = []
        self._pods: set = set()  # (namespace, name, uid, node) of the jobs not over: one job a pod and node

    def label(self, namespace: str, name: str, uid: str, node: str, labels: Dict[str, str],
              annotations: Optional[Dict[str, str]] = None, has_labels: bool = False,
              on_binding: bool = False) -> None:
        """``has_labels``: the pod had a labels map when admitted, so the labels can be sent without
        reading the pod first (one call instead of two, when the binding is stored by then).
        ``on_binding``: the labels ride on the Binding; only if they do not come are they sent."""
        with self._wake:
            if (namespace, name, uid, node) in self._pods:
                return  # labelled already on its way (a sweep finding it again before that is done)
            self._pods.add((namespace, name, uid, node))
        now = self.clock()
        blind = has_labels and not annotations
        self._schedule(now + (CONFIRM_AFTER if on_binding else FIRST_TRY if blind else 0.0),
                       _Job(namespace, name, uid, node, dict(labels), until=now + GIVE_UP_AFTER,
                            annotations=dict(annotations or {}), blind=blind, on_binding=on_binding))
        with self._wake:
            while len(self._threads) < WORKERS:
                thread = threading.Thread(target=self._run, name=f"eci-profile-binding-labels-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()

    def pending(self) -> int:
        with self._wake:
            return len(self._due) + self._active

    def drain(self, timeout: float) -> int:
        """At shutdown: wait up to ``timeout`` seconds for the jobs left; returns how many still are."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while (self._due or self._active) and time.monotonic() < deadline:
                self._wake.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            return len(self._due) + self._active

    def _schedule(self, when: float, job: _Job) -> None:
        with self._wake:
            heapq.heappush(self._due, (when, next(self._sequence), job))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > self.clock():
                    self._wake.wait(None if not self._due else self._due[0][0] - self.clock())
                _, _, job = heapq.heappop(self._due)
                self._active += 1
            try:
                self.attempt(job)
            except Exception:  # one pod's trouble is a log line, never the thread
                log.exception("labelling pod %s/%s failed", job.namespace, job.name)
                self._forget(job)
            finally:
                with self._wake:
                    self._active -= 1
                    self._wake.notify_all()

    def attempt(self, job: _Job) -> Optional[str]:
        """One try; schedules the next when the binding is not stored yet. Returns the outcome when
        the job is over (labelled, gone, elsewhere, failed), else None."""
        path = object_path("v1", "pods", job.name, job.namespace)
        why = ""
        if job.on_binding:
            if self.seen(job.namespace, job.name, job.uid, job.labels):
                self.binding_copies = True
                return self._over(job, "withBinding")
            if self.binding_copies and job.looks < CONFIRM_LOOKS:  # known to copy them: the watch is behind
                job.looks += 1
                self._schedule(self.clock() + CONFIRM_AFTER, job)
                return None
            job.on_binding = False
            job.blind, job.learn = False, True  # read the pod: copied (the watch is behind), or not?
        try:
            if job.blind:
                job.blind = False  # once: a refusal (not bound yet, replaced, elsewhere) is read to tell which
                try:
                    self.kube.patch(path, guarded_patch({"uid": job.uid, "labels": job.labels}, job.node, job.labels,
                                                        {}), content_type=JSON_PATCH, timeout=5.0)
                    return self._over(job, "labelled")
                except ApiError as exc:
                    if exc.status not in (409, 422):
                        raise
            pod = self.kube.get(path, timeout=5.0)
            meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
            if job.uid and meta.get("uid") != job.uid:
                return self._over(job, "gone")  # deleted and created again: not the pod we admitted
            bound = spec.get("nodeName") or ""
            if bound and bound != job.node:
                return self._over(job, "elsewhere")  # the binding to the virtual node did not happen
            if bound:
                current = meta.get("labels") or {}
                missing = {k: v for k, v in job.labels.items() if current.get(k) != v}
                if job.learn:
                    job.learn = False
                    self.binding_copies = not missing
                    if missing:
                        log.info("the API server does not copy a Binding's labels onto the pod (before Kubernetes "
                                 "1.35, or PodTopologyLabelsAdmission off): labels of pods bound to virtual nodes "
                                 "are PATCHed once the binding is stored")
                have = meta.get("annotations") or {}
                annotations = {k: v for k, v in job.annotations.items() if k not in have}
                if missing or annotations:
                    self.kube.patch(path, guarded_patch(meta, job.node, missing, annotations),
                                    content_type=JSON_PATCH, timeout=5.0)
                return self._over(job, "labelled")
            why = "not bound yet"
        except ApiError as exc:
            if exc.status == 404:
                return self._over(job, "gone")
            # A test failed (422): replaced, bound elsewhere, or a key added meanwhile; the pod read
            # again at once says which.
            if exc.status in (409, 422):
                job.conflicts += 1
                if job.conflicts <= 5:
                    self._schedule(self.clock(), job)
                    return None
            why = exc.message
        if self.clock() + job.delay > job.until:
            log.warning("could not add labels %s to pod %s/%s bound to virtual node %s: %s",
                        job.labels, job.namespace, job.name, job.node, why)
            self.failed({"name": job.name, "namespace": job.namespace, "uid": job.uid}, why)
            return self._over(job, "failed")
        self._schedule(self.clock() + job.delay, job)
        job.delay = min(job.delay * 2, MAX_RETRY)
        return None

    def _over(self, job: _Job, outcome: str) -> str:
        self._forget(job)
        self.outcome(outcome)
        return outcome

    def _forget(self, job: _Job) -> None:
        with self._wake:
            self._pods.discard((job.namespace, job.name, job.uid, job.node))


def guarded_patch(meta: dict, node: str, labels: Dict[str, str], annotations: Dict[str, str]) -> list:
    """A JSON patch setting ``labels`` and adding ``annotations`` (only where the pod has no such
    key when the patch is applied) to the pod ``meta`` belongs to, if it is still that pod, bound
    to ``node``."""
    ops = [{"op": "test", "path": "/metadata/uid", "value": meta.get("uid")},
           {"op": "test", "path": "/spec/nodeName", "value": node}]
    for where, values, keep in (("labels", labels, False), ("annotations", annotations, True)):
        if not values:
            continue
        if not meta.get(where):  # no map yet: add it whole, unless one appeared meanwhile
            ops += [{"op": "test", "path": f"/metadata/{where}", "value": None},
                    {"op": "add", "path": f"/metadata/{where}", "value": values}]
            continue
        for key, value in values.items():
            pointer = f"/metadata/{where}/{key.replace('~', '~0').replace('/', '~1')}"
            if keep:  # an annotation the pod got meanwhile is its own
                ops.append({"op": "test", "path": pointer, "value": None})
            ops.append({"op": "add", "path": pointer, "value": value})
    return ops
