"""Prometheus metrics of one host (own registry, so several hosts can live in one process)."""

from __future__ import annotations

import bisect
import os
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.values import MutexValue

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0)
# A reconcile usually makes an API call or two: milliseconds to tens of seconds.
WORK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.admissions = Counter(
            "admission_host_admissions", "Admission requests answered, by outcome "
            "(patched, unchanged, denied, error).", ["resource", "operation", "outcome"], registry=r)
        self.admission_seconds = Histogram(
            "admission_host_admission_duration_seconds", "Time spent answering an admission request.",
            ["resource", "operation"], buckets=LATENCY_BUCKETS, registry=r)
        self.mutator_calls = Counter(
            "admission_host_mutator_calls", "Mutator runs, by outcome (ok, error, denied, late, over_budget).",
            ["plugin", "mutator", "outcome"], registry=r)
        self.mutator_overlaps = Counter(
            "admission_host_mutator_overlaps", "Values a plugin changed or removed that another plugin had "
            "set before it in the same request (the later one wins), by the value's JSON pointer.",
            ["first", "second", "path"], registry=r)
        self.undeclared_changes = Counter(
            "admission_host_undeclared_changes", "Changes mutators made outside their declared paths "
            "(dropped).", ["mutators"], registry=r)
        self.mutator_seconds = Histogram(
            "admission_host_mutator_duration_seconds", "Time spent in one mutator.",
            ["plugin", "mutator"], buckets=LATENCY_BUCKETS, registry=r)
        self.event_loop_mutator_seconds = Histogram(
            "admission_host_event_loop_mutator_duration_seconds", "Time one call of a nonblocking mutator held "
            "the event-loop thread, which serves nothing else meanwhile (/healthz included).",
            ["plugin", "mutator"], buckets=LATENCY_BUCKETS, registry=r)
        self.event_loop_handoffs = Counter(
            "admission_host_event_loop_handoffs", "Admissions begun on the event-loop thread that had "
            "to wait (a cache miss, an API call) and were started again on a worker thread.", registry=r)
        self.bad_requests = Counter(
            "admission_host_bad_requests", "Webhook calls rejected before admission, by HTTP status.",
            ["status"], registry=r)
        # With several workers (each with its own caches), gauges show the largest value.
        self.cache_objects = Gauge(
            "admission_host_cache_objects", "Objects held in a watch cache.", ["watch"], registry=r,
            multiprocess_mode="livemax")
        self.watch_restarts = Counter(
            "admission_host_watch_restarts", "Watch restarts, by reason (expired, error, closed).",
            ["watch", "reason"], registry=r)
        self.watch_refused_objects = Counter(
            "admission_host_watch_refused_objects", "Objects a watch did not cache because its transform "
            "raised (raised), returned something not a dict (not_an_object), or lost the object's "
            "metadata.name or metadata.namespace (key).", ["watch", "plugin", "reason"], registry=r)
        self.watch_last_sync = Gauge(
            "admission_host_watch_last_sync_timestamp_seconds",
            "When a watch cache last completed a full list.", ["watch"], registry=r, multiprocess_mode="livemax")
        self.leader = Gauge("admission_host_leader", "1 while this replica holds the leader lease.",
                            registry=r, multiprocess_mode="livemax")
        self.tls_handshakes = Counter(
            "admission_host_tls_handshakes", "TLS connections set up (each a full handshake: the API server's "
            "webhook client keeps 25 idle connections a host and resumes no session, so a burst of more "
            "concurrent calls pays one per call over 25).", registry=r)
        self.certificate_expiry = Gauge(
            "admission_host_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use.", registry=r, multiprocess_mode="livemin")
        # Controllers' work queues (framework.kube.workqueue), named like client-go's.
        self.workqueue_adds = Counter(
            "admission_host_workqueue_adds", "Keys added to a controller's work queue (not counting a key "
            "added again while it waits).", ["name"], registry=r)
        self.workqueue_retries = Counter(
            "admission_host_workqueue_retries", "Keys requeued with a back-off after their reconcile failed.",
            ["name"], registry=r)
        self.workqueue_work_seconds = Histogram(
            "admission_host_workqueue_work_duration_seconds", "Time one reconcile took.", ["name"],
            buckets=WORK_BUCKETS, registry=r)
        self.workqueues = []
        r.register(_WorkQueueGauges(self.workqueues))
        # Every request the host's KubeClient sends, named as the API server's apiserver_request_total
        # names them, so the two can be compared.
        self.api_requests = Counter(
            "admission_host_api_requests", "Requests sent to the API server, by verb (GET, LIST, WATCH, POST, "
            "PUT, PATCH, DELETE, DELETECOLLECTION), resource (with its subresource: pods/binding) and HTTP "
            "status (error: no answer).", ["verb", "resource", "code"], registry=r)
        self.api_request_seconds = Histogram(
            "admission_host_api_request_duration_seconds", "Time until the API server's answer (a watch: until "
            "its stream began).", ["verb", "resource"], buckets=WORK_BUCKETS, registry=r)
        self._api_children = {}
        self._admission_children = {}
        self._mutator_children = {}
        self._event_loop_children = {}

    def exposition(self) -> bytes:
        """The Prometheus text of ``/metrics``. With several workers, the metrics every worker
        keeps in the shared files, summed, plus this worker's own collectors (computed from its
        caches, which every worker holds alike)."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        view = CollectorRegistry()
        multiprocess.MultiProcessCollector(view)
        for collector in list(self.registry._collector_to_names):
            if not isinstance(collector, MetricWrapperBase):
                view.register(collector)
        return generate_latest(view)

    def admission(self, resource: str, operation: str, outcome: str, seconds: float) -> None:
        key = (resource, operation, outcome)
        (self._admission_children.get(key)
         or self._pair(self._admission_children, key, self.admissions, self.admission_seconds)).add(seconds)

    def mutator(self, plugin: str, name: str, outcome: str, seconds: float) -> None:
        key = (plugin, name, outcome)
        (self._mutator_children.get(key)
         or self._pair(self._mutator_children, key, self.mutator_calls, self.mutator_seconds)).add(seconds)

    def api_request(self, verb: str, resource: str, code: str, seconds: float) -> None:
        key = (verb, resource, code)
        (self._api_children.get(key)
         or self._pair(self._api_children, key, self.api_requests, self.api_request_seconds)).add(seconds)

    def event_loop(self, plugin: str, name: str, seconds: float) -> None:
        key = (plugin, name)
        (self._event_loop_children.get(key)
         or self._pair(self._event_loop_children, key, None, self.event_loop_mutator_seconds)).add(seconds)

    @staticmethod
    def _pair(children: dict, key: tuple, counter, histogram) -> "_Counted":
        """The counter's and histogram's children for ``key`` (the histogram's labels are its first
        ones), made once and kept in ``children``."""
        counted = children[key] = _Counted(None if counter is None else counter.labels(*key),
                                           histogram.labels(*key[:len(histogram._labelnames)]))
        return counted


class _Counted:
    """A counter's child and a histogram's child updated together, once per admission or mutator
    run, straight through their values: without inc()'s and observe()'s argument checks and linear
    search for the bucket, and, where the values are plain ones (not multiprocess mode), under one
    lock instead of one per value. These children are written nowhere else (only through
    :class:`Metrics`' methods), so one lock shared by all of them orders every write; a scrape
    reads each float whole."""

    __slots__ = ("add",)

    def __init__(self, counter, histogram):
        try:
            value = None if counter is None else counter._value
            total, buckets, bounds = histogram._sum, histogram._buckets, list(histogram._upper_bounds)
        except AttributeError:  # a prometheus_client that keeps them otherwise: its public calls
            def add(seconds: float) -> None:
                if counter is not None:
                    counter.inc()
                histogram.observe(seconds)
            self.add = add
            return
        bucket = bisect.bisect_left  # the first bound >= seconds: observe()'s bucket (the last is +Inf)
        if all(type(v) is MutexValue for v in (total, *buckets, *([] if value is None else [value]))):
            lock = _COUNTED_LOCK

            def add(seconds: float) -> None:
                with lock:
                    if value is not None:
                        value._value += 1
                    total._value += seconds
                    buckets[bucket(bounds, seconds)]._value += 1
        elif value is None:
            def add(seconds: float) -> None:
                total.inc(seconds)
                buckets[bucket(bounds, seconds)].inc(1)
        else:
            def add(seconds: float) -> None:
                value.inc(1)
                total.inc(seconds)
                buckets[bucket(bounds, seconds)].inc(1)
        self.add = add


_COUNTED_LOCK = threading.Lock()


class _WorkQueueGauges:
    """Each work queue's depth, waiting keys and longest running reconcile, read at scrape time."""

    def __init__(self, queues):
        self.queues = queues

    def describe(self):
        return []

    def collect(self):
        depth = GaugeMetricFamily("admission_host_workqueue_depth", "Keys ready to be reconciled.", labels=["name"])
        waiting = GaugeMetricFamily("admission_host_workqueue_waiting", "Keys waiting for a later time "
                                    "(a decision due later, or a retry's back-off).", labels=["name"])
        longest = GaugeMetricFamily("admission_host_workqueue_longest_running_processor_seconds",
                                    "How long the reconcile under way has been running.", labels=["name"])
        for queue in self.queues:
            depth.add_metric([queue.name], len(queue))
            waiting.add_metric([queue.name], queue.waiting())
            longest.add_metric([queue.name], queue.longest_running())
        return [depth, waiting, longest]
