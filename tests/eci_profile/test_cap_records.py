"""maxVirtualPods counted across replicas: each binding is recorded in the Selector's ConfigMap
with its resourceVersion as a precondition, so replicas answering at once never pass the cap.

The API server's part (resourceVersion preconditions) is played by a small store here; the
end-to-end suite runs replicas against the real one."""

import copy
import threading
import time

from framework import ApiError
from framework.kube.store import Store
from plugins.eci_profile.cap import RECORD_GRACE_SECONDS, CapRecords, VirtualPods, record_name

NS = "admission-host"


class VersionedKube:
    """Objects by path with a resourceVersion each: a PUT with a stale one, or a POST of an
    existing name, is a 409, as from the API server."""

    def __init__(self):
        self.objects, self.version, self.lock = {}, 0, threading.Lock()
        self.conflicts = 0
        self.latency = 0.0

    def _bump(self, obj):
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(obj)

    def get(self, path, timeout=None, **query):
        try:
            with self.lock:
                if path in self.objects:
                    return copy.deepcopy(self.objects[path])
                items = [copy.deepcopy(o) for p, o in self.objects.items() if p.rpartition("/")[0] == path]
                if path.endswith("/configmaps"):
                    return {"items": items}
                raise ApiError(404, f"{path} not found")
        finally:
            time.sleep(self.latency)  # the answer's way back: others read the same version meanwhile

    def post(self, path, body, timeout=None, **query):
        with self.lock:
            key = f"{path}/{body['metadata']['name']}"
            if key in self.objects:
                self.conflicts += 1
                raise ApiError(409, "already exists")
            self.objects[key] = copy.deepcopy(body)
            return self._bump(self.objects[key])

    def put(self, path, body, timeout=None, **query):
        with self.lock:
            if self.objects[path]["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion"):
                self.conflicts += 1
                raise ApiError(409, "the object has been modified")
            self.objects[path] = copy.deepcopy(body)
            return self._bump(self.objects[path])

    def delete(self, path, timeout=None, **query):
        with self.lock:
            return self.objects.pop(path)


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


def replica(kube, clock=None, pending=lambda key, uid: False, virtual_store=None):
    if virtual_store is None:  # (an empty Store is falsy)
        virtual_store = Store("virtual", {"selector": lambda p: [p["selector"]]})
    virtual = VirtualPods(virtual_store)
    return CapRecords(kube, NS, virtual, pending=pending, clock=clock or Clock())


def recorded(kube, selector="s"):
    import orjson

    return orjson.loads(kube.objects[f"/api/v1/namespaces/{NS}/configmaps/{record_name(selector)}"]["data"]["pods"])


def test_replicas_taking_turns_never_pass_the_cap():
    kube = VersionedKube()
    a, b = replica(kube), replica(kube)
    allowed = [r.reserve("s", f"uid-{i}", f"default/p{i}", 10, 5.0)[0] for i, r in
               zip(range(30), [a, b] * 15)]
    assert allowed == [True] * 10 + [False] * 20
    assert sorted(recorded(kube)) == sorted(f"uid-{i}" for i in range(10))
    # A binding tried again is counted once, on either replica.
    assert b.reserve("s", "uid-3", "default/p3", 10, 5.0) == (True, 10)


def test_replicas_answering_at_once_never_pass_the_cap():
    kube = VersionedKube()
    kube.latency = 0.002
    replicas = [replica(kube) for _ in range(3)]
    results, start = [], threading.Barrier(30)

    def bind(i):
        start.wait()
        results.append(replicas[i % 3].reserve("s", f"uid-{i}", f"default/p{i}", 10, 10.0)[0])

    threads = [threading.Thread(target=bind, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(True) == 10 and len(recorded(kube)) == 10
    assert kube.conflicts > 0  # they did collide: the precondition, not luck, kept the count


def test_a_recorded_pod_counts_while_recent_pending_or_on_a_virtual_node_as_cached():
    kube, clock = VersionedKube(), Clock()
    store = Store("virtual", {"selector": lambda p: [p["selector"]]})
    store.upsert({"metadata": {"name": "bound", "namespace": "default", "uid": "uid-bound"}, "selector": "s"})
    a = replica(kube, clock, pending=lambda key, uid: uid == "uid-pending", virtual_store=store)
    for name in ("bound", "pending", "gone"):
        assert a.reserve("s", f"uid-{name}", f"default/{name}", 3, 5.0)[0]
    assert not a.reserve("s", "uid-next", "default/next", 3, 5.0)[0]
    clock.now += RECORD_GRACE_SECONDS  # "gone" was neither bound to a virtual node nor pending
    assert a.count("s", 5.0) == 2
    assert a.reserve("s", "uid-next", "default/next", 3, 5.0) == (True, 3)
    # "bound" counted from the cache (no write needed); "gone" left the record with the write.
    assert sorted(recorded(kube)) == ["uid-next", "uid-pending"]


def test_a_pod_on_a_virtual_node_the_record_never_saw_counts():
    # Bound while no replica answered (failure policy Ignore): only the cache knows it.
    store = Store("virtual", {"selector": lambda p: [p["selector"]]})
    store.upsert({"metadata": {"name": "early", "namespace": "default", "uid": "uid-early"}, "selector": "s"})
    a = replica(VersionedKube(), virtual_store=store)
    assert a.reserve("s", "uid-1", "default/p1", 2, 5.0) == (True, 2)
    assert a.reserve("s", "uid-2", "default/p2", 2, 5.0) == (False, 2)


def test_the_leader_prunes_records_and_deletes_those_of_uncapped_selectors():
    kube, clock = VersionedKube(), Clock()
    a = replica(kube, clock, pending=lambda key, uid: uid == "uid-waiting")
    for selector, uid in (("kept", "uid-waiting"), ("kept", "uid-gone"), ("uncapped", "uid-x"), ("deleted", "uid-y")):
        assert a.reserve(selector, uid, f"default/{uid}", 5, 5.0)[0]
    kube.objects[f"/api/v1/namespaces/{NS}/configmaps/not-ours"] = {
        "metadata": {"name": "not-ours", "resourceVersion": "1", "labels": {"eci.aliyun.com/cap-record": "true"},
                     "annotations": {"eci.aliyun.com/selector": "elsewhere"}}}
    assert a.clean({"kept": 5}.get) == 2  # recent entries stay; the records of Selectors without a cap go
    clock.now += RECORD_GRACE_SECONDS
    assert a.clean({"kept": 5}.get) == 1
    assert recorded(kube, "kept") == {"uid-waiting": ["default/uid-waiting", 1_800_000_000]}
    names = sorted(path.rsplit("/", 1)[1] for path in kube.objects)
    assert names == ["eci-cap-kept", "not-ours"]


def test_a_long_selector_name_gets_a_record_name_that_fits():
    assert record_name("web") == "eci-cap-web"
    long = "a" * 250
    assert len(record_name(long)) <= 253 and record_name(long) != record_name("a" * 249 + "b")


def test_the_record_keeps_only_what_the_caches_may_not_show_yet():
    kube, clock = VersionedKube(), Clock()
    store = Store("virtual", {"selector": lambda p: [p["selector"]]})
    a = replica(kube, clock, virtual_store=store)
    assert a.reserve("s", "uid-1", "default/p1", 2, 5.0) == (True, 1)
    store.upsert({"metadata": {"name": "p1", "namespace": "default", "uid": "uid-1"}, "selector": "s"})  # bound
    clock.now += RECORD_GRACE_SECONDS
    # Counted by the cache now: the next write leaves it out of the record, and it still counts.
    assert a.reserve("s", "uid-2", "default/p2", 2, 5.0) == (True, 2)
    assert sorted(recorded(kube)) == ["uid-2"]
    assert a.reserve("s", "uid-3", "default/p3", 2, 5.0) == (False, 2)
