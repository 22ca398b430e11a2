"""The reflector (list, then watch) against a scripted API server on loopback."""

import logging
import threading
import time

import pytest

from framework import Watch
from framework.kube.reflector import Reflector
from framework.kube.store import Store
from framework.metrics import Metrics

from .fakeapi import Reply, Stream, bookmark, event, obj, page, status, wait_for

PATH = "/api/v1/namespaces/default/pods"


class Script:
    """Answers lists and watches from two queues, in order. When a queue is empty, a list answers
    with its last reply again and a watch stays open with nothing to say."""

    def __init__(self, lists, watches=()):
        self.lists = list(lists)
        self.watches = list(watches)
        self.last_list = None

    def __call__(self, req):
        assert req.path == PATH, req.path
        if req.is_watch:
            return self.watches.pop(0) if self.watches else Stream()
        if self.lists:
            self.last_list = self.lists.pop(0)
        return self.last_list


@pytest.fixture
def run(fake_api):
    """``run(script, watch=..., **reflector_kw)`` starts a reflector on a fresh store."""
    started = []

    def start(script, watch=None, **kw):
        api = fake_api(script)
        watch = watch or Watch(name="pods", resource="pods", kind="Pod", namespace="default")
        store = Store(watch.name, watch.indexers)
        kw.setdefault("backoff_base", 0.01)
        kw.setdefault("backoff_cap", 0.05)
        reflector = Reflector(api.client(), watch, store, metrics=Metrics(), **kw)
        reflector.start()
        started.append((reflector, api))
        return reflector, store, api

    yield start
    for reflector, api in started:
        reflector.stop()
        api.close()  # ends held watches, so the thread sees the stop
        reflector.thread.join(5)
        assert not reflector.thread.is_alive()


def lists(api):
    return api.seen(lambda r: not r.is_watch)


def watches(api):
    return api.seen(lambda r: r.is_watch)


def names(store):
    return sorted(store.keys())


def restarts(reflector, reason):
    return reflector.metrics.registry.get_sample_value(
        "admission_host_watch_restarts_total", {"watch": reflector.watch.name, "reason": reason}) or 0


def test_lists_page_by_page_then_watches_from_the_list_version(run):
    gate = threading.Event()
    script = Script(
        lists=[page([obj("a", "1"), obj("b", "2")], cont="token-1"), page([obj("c", "3")], rv="10")],
        watches=[Stream([event("ADDED", obj("d", "11")), event("MODIFIED", obj("a", "12", spec={"x": 1})),
                         event("DELETED", obj("b", "13")), bookmark("20"), gate.wait])])
    reflector, store, api = run(script, page_size=2, watch=Watch(
        name="pods", resource="pods", kind="Pod", namespace="default", label_selector="app=web",
        field_selector="spec.nodeName="))
    wait_for(lambda: reflector.resource_version == "20")
    assert names(store) == ["default/a", "default/c", "default/d"]
    assert store.get("default/a")["spec"] == {"x": 1}
    assert store.has_synced()

    first, second = lists(api)
    assert first.query == {"limit": "2", "labelSelector": "app=web", "fieldSelector": "spec.nodeName="}
    assert second.query["continue"] == "token-1" and second.query["limit"] == "2"
    [watch] = watches(api)
    assert watch.query == {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": "10",
                           "timeoutSeconds": "300", "labelSelector": "app=web", "fieldSelector": "spec.nodeName="}
    assert store.resource_version == "10"
    gate.set()


def test_not_synced_until_the_whole_list_is_in(run):
    gate = threading.Event()

    class Slow(Script):
        def __call__(self, req):
            if not req.is_watch and req.query.get("continue"):
                gate.wait(5)
            return super().__call__(req)

    reflector, store, api = run(Slow(lists=[page([obj("a", "1")], cont="c"), page([obj("b", "2")], rv="5")]),
                                page_size=1)
    wait_for(lambda: len(lists(api)) == 2)
    time.sleep(0.05)
    assert not store.has_synced() and len(store) == 0, "a half-listed cache is never shown"
    gate.set()
    assert store.wait_synced(5)
    assert names(store) == ["default/a", "default/b"]


def test_rewatches_from_the_last_bookmark_after_a_normal_end(run):
    script = Script(lists=[page([], rv="5")],
                    watches=[Stream([event("ADDED", obj("x", "6")), bookmark("9")], end="close")])
    reflector, store, api = run(script)
    wait_for(lambda: len(watches(api)) == 2)
    assert [w.query["resourceVersion"] for w in watches(api)] == ["5", "9"]
    assert len(lists(api)) == 1, "a watch that ends normally is resumed, not relisted"
    assert names(store) == ["default/x"]
    assert restarts(reflector, "error") == 0


def test_an_expired_error_event_relists(run):
    handler_events = []
    script = Script(lists=[page([obj("a", "1"), obj("b", "2")], rv="10"), page([obj("b", "25"), obj("c", "26")],
                                                                             rv="30")],
                    watches=[Stream([event("ADDED", obj("z", "11")),
                                     event("ERROR", status(410, "Expired", "too old resource version: 10"))])])
    reflector, store, api = run(script)
    store.add_handler(lambda kind, old, new: handler_events.append((kind, (new or old)["metadata"]["name"])))
    wait_for(lambda: len(watches(api)) == 2)
    assert names(store) == ["default/b", "default/c"]
    assert len(lists(api)) == 2
    assert [w.query["resourceVersion"] for w in watches(api)] == ["10", "30"]
    assert restarts(reflector, "expired") == 1
    assert ("DELETED", "a") in handler_events and ("DELETED", "z") in handler_events
    assert ("ADDED", "c") in handler_events and ("MODIFIED", "b") in handler_events


def test_a_410_answer_to_the_watch_relists(run):
    script = Script(lists=[page([obj("a", "1")], rv="10"), page([obj("b", "2")], rv="40")],
                    watches=[Reply(410, status(410, "Expired"))])
    reflector, store, api = run(script)
    wait_for(lambda: len(watches(api)) == 2)
    assert names(store) == ["default/b"]
    assert len(lists(api)) == 2
    assert watches(api)[1].query["resourceVersion"] == "40"
    assert restarts(reflector, "expired") == 1 and restarts(reflector, "error") == 0


def test_an_expired_continue_token_starts_the_list_over(run):
    script = Script(lists=[page([obj("a", "1")], cont="old"), Reply(410, status(410, "Expired")),
                           page([obj("a", "1")], cont="new"), page([obj("b", "2")], rv="7")])
    reflector, store, api = run(script, page_size=1)
    wait_for(lambda: len(watches(api)) == 1)
    assert [r.query.get("continue") for r in lists(api)] == [None, "old", None, "new"]
    assert names(store) == ["default/a", "default/b"]
    assert watches(api)[0].query["resourceVersion"] == "7"


def test_server_errors_back_off_and_retry(run):
    script = Script(lists=[Reply(500, status(500, "InternalError")), Reply(503, status(503, "ServiceUnavailable")),
                           page([obj("a", "1")], rv="3")],
                    watches=[Reply(500, status(500, "InternalError")), Stream([event("ADDED", obj("b", "4"))])])
    started = time.monotonic()
    reflector, store, api = run(script, backoff_base=0.05, backoff_cap=1.0)
    wait_for(lambda: "default/b" in store)
    elapsed = time.monotonic() - started
    # Three failures, each waiting at least half its backoff (jitter): 0.025 + 0.05 + 0.025 s.
    assert elapsed >= 0.1
    assert restarts(reflector, "error") == 3
    assert len(lists(api)) == 3, "a failed watch resumes from its version, without a new list"
    assert [w.query["resourceVersion"] for w in watches(api)] == ["3", "3"]


class RecordingEvent(threading.Event):
    """A stop event that records each backoff and returns at once."""

    def __init__(self):
        super().__init__()
        self.waits = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


def test_backoff_grows_and_is_capped(fake_api):
    api = fake_api(Script(lists=[Reply(500, status(500, "InternalError"))] * 6 + [page([], rv="1")]))
    store = Store()
    reflector = Reflector(api.client(), Watch(name="pods", resource="pods", kind="Pod", namespace="default"),
                          store, backoff_base=1.0, backoff_cap=8.0)
    reflector.stop_event = RecordingEvent()
    reflector.start()
    assert store.wait_synced(5)
    reflector.stop_event.set()
    api.close()
    reflector.thread.join(5)
    waits = reflector.stop_event.waits[:6]  # later ones: the fake's watches end at once (see below)
    assert len(waits) == 6
    for i, delay in enumerate(waits):
        full = min(8.0, 2 ** i)  # 1, 2, 4, 8, 8, 8 with jitter down to half
        assert full * 0.5 <= delay <= full, (i, delay)


def test_watches_that_end_at_once_back_off(fake_api):
    api = fake_api(Script(lists=[page([], rv="1")], watches=[Stream([], end="close") for _ in range(10)]))
    reflector = Reflector(api.client(), Watch(name="pods", resource="pods", kind="Pod", namespace="default"),
                          Store(), backoff_base=0.01, backoff_cap=0.04)
    reflector.stop_event = RecordingEvent()
    reflector.start()
    wait_for(lambda: len(reflector.stop_event.waits) >= 4)
    reflector.stop_event.set()
    api.close()
    reflector.thread.join(5)
    waits = reflector.stop_event.waits[:4]
    # Each immediate end waits (no busy loop), doubling up to the cap. A watch slowed past 1 s by
    # a loaded machine counts as a normal end and starts the doubling over.
    assert all(0.01 <= w <= 0.04 for w in waits), waits
    assert waits[:2] == [0.01, 0.02] or 0.04 in waits, waits


def test_a_connection_cut_mid_stream_resumes_without_a_relist(run):
    script = Script(lists=[page([obj("a", "1")], rv="10")],
                    watches=[Stream([event("ADDED", obj("y", "11")), b'{"type":"ADDED","object":{"metad'],
                                    end="cut"),
                             Stream([event("ADDED", obj("z", "12"))])])
    reflector, store, api = run(script)
    wait_for(lambda: "default/z" in store)
    assert names(store) == ["default/a", "default/y", "default/z"]
    assert len(lists(api)) == 1
    assert [w.query["resourceVersion"] for w in watches(api)] == ["10", "11"]
    assert restarts(reflector, "error") == 1


def test_other_error_events_back_off_and_resume(run):
    script = Script(lists=[page([], rv="10")],
                    watches=[Stream([event("ADDED", obj("y", "11")), event("ERROR", status(500, "InternalError"))]),
                             Stream([event("ADDED", obj("z", "12"))])])
    reflector, store, api = run(script)
    wait_for(lambda: "default/z" in store)
    assert len(lists(api)) == 1
    assert [w.query["resourceVersion"] for w in watches(api)] == ["10", "11"]


def test_forbidden_starts_over_with_a_list(run):
    script = Script(lists=[page([obj("a", "1")], rv="10"), page([obj("b", "2")], rv="20")],
                    watches=[Reply(403, status(403, "Forbidden"))])
    reflector, store, api = run(script)
    wait_for(lambda: len(watches(api)) == 2)
    assert len(lists(api)) == 2 and names(store) == ["default/b"]


def labels_only(o):
    if (o["metadata"].get("labels") or {}).get("skip"):
        return None
    if (o["metadata"].get("labels") or {}).get("explode"):
        raise ValueError("cannot transform this one")
    meta = o["metadata"]
    return {"metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": meta.get("labels", {})}}


def test_transform_and_indexers_apply(run):
    def labelled(name, rv, **labels):
        return {"metadata": {"name": name, "namespace": "default", "resourceVersion": rv, "labels": labels},
                "spec": {"big": "x" * 100}}

    watch = Watch(name="pods", resource="pods", kind="Pod", namespace="default", transform=labels_only,
                  indexers={"app": lambda o: [o["metadata"]["labels"]["app"]] if "app" in o["metadata"]["labels"]
                            else []})
    gate = threading.Event()
    script = Script(lists=[page([labelled("a", "1", app="web"), labelled("b", "2", app="db"),
                                 labelled("s", "3", skip="1"), labelled("e", "4", explode="1")], rv="10")],
                    watches=[Stream([gate.wait, event("MODIFIED", labelled("a", "11", app="db")),
                                     event("ADDED", labelled("c", "12", app="web")),
                                     event("MODIFIED", labelled("b", "13", skip="1")),
                                     event("DELETED", labelled("c", "14", app="web")),
                                     event("ADDED", labelled("d", "15", app="web"))])])
    reflector, store, api = run(script, watch=watch)
    assert store.wait_synced(5)
    assert names(store) == ["default/a", "default/b"], "None from transform skips; a failing transform skips"
    assert store.get("default/a") == {"metadata": {"name": "a", "namespace": "default", "labels": {"app": "web"}}}
    assert [o["metadata"]["name"] for o in store.by_index("app", "web")] == ["a"]
    gate.set()
    wait_for(lambda: "default/d" in store)
    assert names(store) == ["default/a", "default/d"], "a modification the transform drops removes the object"
    assert [o["metadata"]["name"] for o in store.by_index("app", "web")] == ["d"]
    assert [o["metadata"]["name"] for o in store.by_index("app", "db")] == ["a"]
    assert "spec" not in store.get("default/d")
    assert reflector.metrics.registry.get_sample_value("admission_host_cache_objects", {"watch": "pods"}) == 2


def test_cluster_scoped_and_grouped_paths(run):
    watch = Watch(name="selectors", resource="selectors", kind="Selector", group="eci.aliyun.com")
    reflector, store, api = run(lambda req: Stream() if req.is_watch else page([], rv="1"), watch=watch)
    wait_for(lambda: len(api.seen()) == 2)
    assert [r.path for r in api.seen()] == ["/apis/eci.aliyun.com/v1/selectors"] * 2


class CountingStore:
    """Not a Store: what a plugin may hand a Reflector to keep its own summary (drain-back's
    NodeUsage does): replace, upsert, delete, has_synced and len, nothing more."""

    def __init__(self):
        self.objects, self.synced = {}, False

    def replace(self, objects, resource_version=""):
        self.objects = {o["metadata"]["name"]: o for o in objects}
        self.synced = True

    def upsert(self, obj):
        self.objects[obj["metadata"]["name"]] = obj

    def delete(self, key):
        self.objects.pop(key.rpartition("/")[2], None)

    def has_synced(self):
        return self.synced

    def __len__(self):
        return len(self.objects)


def test_any_store_like_object_will_do_and_the_cache_gauge_follows_it(fake_api):
    gate = threading.Event()
    api = fake_api(Script(lists=[page([obj("a", "1"), obj("b", "2")], rv="5")],
                          watches=[Stream([gate.wait, event("ADDED", obj("c", "6")), event("DELETED", obj("a", "7"))])]))
    store = CountingStore()
    reflector = Reflector(api.client(), Watch(name="usage", resource="pods", kind="Pod", namespace="default"),
                          store, metrics=Metrics())
    reflector.start()
    try:
        gauge = lambda: reflector.metrics.registry.get_sample_value("admission_host_cache_objects",  # noqa: E731
                                                                    {"watch": "usage"})
        wait_for(lambda: store.has_synced() and gauge() == 2)
        gate.set()
        wait_for(lambda: sorted(store.objects) == ["b", "c"] and gauge() == 2)
    finally:
        reflector.stop()
        api.close()
        reflector.thread.join(5)


def refused(reflector, reason):
    return reflector.metrics.registry.get_sample_value(
        "admission_host_watch_refused_objects_total",
        {"watch": reflector.watch.name, "plugin": reflector.watch.plugin, "reason": reason}) or 0


def test_a_transform_that_drops_the_name_is_refused_not_merged_under_one_key(run, caplog):
    def labels_only(o):  # keeps what the plugin reads, and forgets the key the cache files objects under
        return {"metadata": {"labels": o["metadata"].get("labels") or {}}}

    watch = Watch(name="pods", resource="pods", kind="Pod", namespace="default", transform=labels_only,
                  plugin="labeller")
    script = Script(lists=[page([obj("a", "1"), obj("b", "2")], rv="10")],
                    watches=[Stream([event("ADDED", obj("c", "11")), event("DELETED", obj("a", "12"))])])
    reflector, store, api = run(script, watch=watch)
    assert store.wait_synced(5)
    wait_for(lambda: reflector.resource_version == "12")
    # Not one object under '' (the last one listed, replacing the others): none.
    assert store.keys() == [] and refused(reflector, "key") == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "watch 'pods' (plugin 'labeller'): its transform's result for default/a has no metadata.name: a transform "
        "must keep metadata.name, and metadata.namespace for namespaced objects, as they came (the cache is keyed "
        "by them); object not cached (further ones are counted in admission_host_watch_refused_objects_total and "
        "logged at debug level)"], "logged once, not once per object"
    assert reflector.thread.is_alive() and not restarts(reflector, "error")


@pytest.mark.parametrize("transform, reason, problem", [
    (lambda o: {"metadata": {"name": o["metadata"]["name"]}}, "key",
     "its transform's result for default/b has no metadata.namespace"),
    (lambda o: {"metadata": {"name": "same", "namespace": "default"}}, "key",
     "its transform's result for default/b is keyed 'default/same'"),
    (lambda o: [o["metadata"]["name"]], "not_an_object",
     "its transform returned a list for default/b; it must return the object to cache (a dict) or None"),
    (lambda o: o["spec"]["missing"], "raised", "its transform failed on default/b: KeyError('spec')"),
])
def test_what_a_transform_makes_uncacheable_is_refused_and_counted(run, caplog, transform, reason, problem):
    def keep_a(o):  # the one object the transform gets right stays cached
        return o if o["metadata"]["name"] == "a" else transform(o)

    watch = Watch(name="pods", resource="pods", kind="Pod", namespace="default", transform=keep_a)
    reflector, store, api = run(Script(lists=[page([obj("a", "1"), obj("b", "2"), obj("c", "3")], rv="10")]),
                                watch=watch)
    assert store.wait_synced(5)
    assert store.keys() == ["default/a"]
    assert refused(reflector, reason) == 2
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.startswith(f"watch 'pods': {problem}"), error


def test_a_store_of_a_plugins_own_takes_results_keyed_its_own_way(fake_api):
    """Drain-back's store keeps three numbers a pod, no metadata: the key check is the Store's."""
    watch = Watch(name="usage", resource="pods", kind="Pod", namespace="default",
                  transform=lambda o: {"k": o["metadata"]["name"]})
    class Summary(CountingStore):
        def replace(self, objects, resource_version=""):
            self.items, self.synced = list(objects), True

    store = Summary()
    api = fake_api(Script(lists=[page([obj("a", "1"), obj("b", "2")], rv="10")]))
    reflector = Reflector(api.client(), watch, store, metrics=Metrics())
    reflector.start()
    try:
        wait_for(lambda: store.has_synced() and sorted(o["k"] for o in store.items) == ["a", "b"])
        assert refused(reflector, "key") == 0
    finally:
        reflector.stop()
        api.close()
        reflector.thread.join(5)
