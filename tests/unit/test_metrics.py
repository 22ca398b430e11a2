"""The per-admission metrics, updated straight through their values, count as inc() and observe() would."""

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram

from framework.metrics import LATENCY_BUCKETS, Metrics, _Counted


def _samples(registry: CollectorRegistry) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples if not s.name.endswith("_created")}


def test_counts_and_buckets_match_the_public_calls():
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["k"], registry=registry)
    histogram = Histogram("h", "h", ["k"], buckets=LATENCY_BUCKETS, registry=registry)
    expected_registry = CollectorRegistry()
    expected_counter = Counter("c", "c", ["k"], registry=expected_registry)
    expected_histogram = Histogram("h", "h", ["k"], buckets=LATENCY_BUCKETS, registry=expected_registry)
    counted = _Counted(counter.labels("a"), histogram.labels("a"))
    # On a bound, between two, past the last: each lands where observe() puts it.
    for seconds in (0.0, 0.0001, 0.0002, 0.001, 0.7, 5.0, 9.0):
        counted.add(seconds)
        expected_counter.labels("a").inc()
        expected_histogram.labels("a").observe(seconds)

    assert _samples(registry) == _samples(expected_registry)


def test_no_update_is_lost_between_threads_sharing_a_histogram():
    # Two outcomes of one resource share the duration histogram's child: four threads, both outcomes.
    metrics = Metrics()

    def admit(outcome):
        for _ in range(5000):
            metrics.admission("pods", "CREATE", outcome, 0.0003)

    threads = [threading.Thread(target=admit, args=(o,)) for o in ("patched", "unchanged", "patched", "unchanged")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    exposed = _samples(metrics.registry)
    patched = (("operation", "CREATE"), ("outcome", "patched"), ("resource", "pods"))
    assert exposed[("admission_host_admissions_total", patched)] == 10000
    duration = (("operation", "CREATE"), ("resource", "pods"))
    assert exposed[("admission_host_admission_duration_seconds_count", duration)] == 20000
    assert exposed[("admission_host_admission_duration_seconds_bucket", (("le", "0.0005"),) + duration)] == 20000
    assert exposed[("admission_host_admission_duration_seconds_bucket", (("le", "0.00025"),) + duration)] == 0
