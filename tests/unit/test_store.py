"""The watch cache: keys, indexes, change handlers, sync state."""

import threading

from framework.kube.store import Store, key_of
from framework.testing import node, pod


def by_app(obj):
    app = (obj["metadata"].get("labels") or {}).get("app")
    return [app] if app else []


def test_keys_are_namespace_slash_name_or_name():
    assert key_of(pod("p", namespace="ns")) == "ns/p"
    assert key_of(node("n")) == "n"


def test_reads():
    store = Store("pods")
    store.upsert(pod("a", namespace="x"))
    store.upsert(node("n"))
    assert store.get("x/a")["metadata"]["name"] == "a"
    assert store.get_by_name("a", "x") is store.get("x/a")
    assert store.get_by_name("n") is store.get("n")
    assert store.get_by_name("a") is None
    assert "x/a" in store and "y/a" not in store
    assert len(store) == 2 and sorted(store.keys()) == ["n", "x/a"]
    assert len(store.list()) == 2


def test_synced_only_after_a_full_list():
    store = Store()
    store.upsert(pod("a"))
    assert not store.has_synced()
    assert not store.wait_synced(0.01)
    store.replace([pod("b")], "42")
    assert store.has_synced() and store.wait_synced(0)
    assert store.resource_version == "42"
    assert store.keys() == ["default/b"], "replace drops what the list no longer has"


def test_wait_synced_wakes_up():
    store = Store()
    threading.Timer(0.05, store.replace, args=([],)).start()
    assert store.wait_synced(5)


def test_indexes_follow_updates_and_deletes():
    store = Store("pods", {"app": by_app})
    store.upsert(pod("a", labels={"app": "web"}))
    store.upsert(pod("b", labels={"app": "web"}))
    store.upsert(pod("c", labels={"app": "db"}))
    assert sorted(o["metadata"]["name"] for o in store.by_index("app", "web")) == ["a", "b"]
    store.upsert(pod("a", labels={"app": "db"}))
    assert [o["metadata"]["name"] for o in store.by_index("app", "web")] == ["b"]
    assert sorted(o["metadata"]["name"] for o in store.by_index("app", "db")) == ["a", "c"]
    store.delete("default/b")
    assert store.by_index("app", "web") == []
    assert sorted(store.index_values("app")) == ["db"], "empty index values are dropped"
    store.delete(pod("c"))
    store.replace([pod("z", labels={"app": "cache"})])
    assert store.index_values("app") == ["cache"]
    assert store.by_index("app", "nope") == []


def test_a_failing_indexer_does_not_lose_the_object():
    def broken(obj):
        raise KeyError("labels")

    store = Store("pods", {"broken": broken})
    store.upsert(pod("a"))
    assert store.keys() == ["default/a"]
    assert store.index_values("broken") == []


def test_handlers_see_adds_updates_deletes_and_list_differences():
    store = Store("pods")
    events = []
    store.add_handler(lambda event, old, new: events.append(
        (event, old and old["metadata"]["name"], new and new["metadata"].get("labels"))))
    store.upsert(pod("a", labels={"v": "1"}))
    store.upsert(pod("a", labels={"v": "1"}))  # the same again (a write the transform left out): no event
    store.upsert(pod("a", labels={"v": "2"}))
    store.delete("default/a")
    store.delete("default/missing")  # nothing to tell
    assert events == [("ADDED", None, {"v": "1"}), ("MODIFIED", "a", {"v": "2"}), ("DELETED", "a", None)]
    events.clear()
    store.replace([pod("keep", labels={}), pod("change", labels={"v": "1"}), pod("gone")])
    events.clear()
    store.replace([pod("keep", labels={}), pod("change", labels={"v": "2"}), pod("new")])
    assert sorted(events, key=str) == sorted([("DELETED", "gone", None), ("MODIFIED", "change", {"v": "2"}),
                                              ("ADDED", None, None)], key=str)


def test_a_failing_handler_does_not_stop_the_others():
    store = Store("pods")
    seen = []

    def broken(*args):
        raise RuntimeError("handler bug")

    store.add_handler(broken)
    store.add_handler(lambda event, old, new: seen.append(event))
    store.upsert(pod("a"))
    assert seen == ["ADDED"] and store.keys() == ["default/a"]


def test_concurrent_writers_and_readers():
    store = Store("pods", {"app": by_app})
    stop = threading.Event()
    errors = []

    def read():
        while not stop.is_set():
            try:
                for obj in store.by_index("app", "web"):
                    assert obj["metadata"]["labels"]["app"] == "web"
                store.list()
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(3000):
        store.upsert(pod(f"p{i % 50}", labels={"app": "web" if i % 2 else "db"}))
        if i % 7 == 0:
            store.delete(f"default/p{i % 50}")
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
