"""The Host's life: offline caches, controllers, shutdown."""

import logging
import threading

import pytest

from framework import Controller, Watch
from framework.config import Config
from framework.host import Host, _match_label_string
from framework.testing import namespace, node, pod

from .fakeapi import Stream, page, wait_for
from .helpers import make_plugin


def watcher(*watches):
    return make_plugin("watcher", admission_host_watches=lambda: list(watches))


def test_load_objects_routes_objects_to_the_watches_that_want_them():
    def strip(obj):
        return {"metadata": {"name": obj["metadata"]["name"], "labels": obj["metadata"].get("labels", {})}}

    watches = [
        Watch(name="namespaces", resource="namespaces", kind="Namespace", transform=strip),
        Watch(name="virtual-nodes", resource="nodes", kind="Node", label_selector="type=virtual-kubelet"),
        Watch(name="pending", resource="pods", kind="Pod", field_selector="spec.nodeName="),
        Watch(name="prod-pods", resource="pods", kind="Pod", namespace="prod"),
        Watch(name="deployments", resource="deployments", kind="Deployment", group="apps"),
    ]
    host = Host(Config(enabled_plugins=[]), extra_plugins=[watcher(*watches)])
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "prod"}}
    bound = pod("bound", spec={"nodeName": "n1", "containers": []})
    other_kind = {"apiVersion": "other.example.com/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    unused = host.load_objects([
        namespace("prod", {"env": "prod"}), node("vk", {"type": "virtual-kubelet"}), node("plain"),
        pod("pending-1"), pod("pending-2", namespace="prod"), bound, deployment, other_kind,
    ])
    assert host.store("namespaces").list() == [{"metadata": {"name": "prod", "labels": {"env": "prod"}}}]
    assert host.store("virtual-nodes").keys() == ["vk"]
    assert sorted(host.store("pending").keys()) == ["default/pending-1", "prod/pending-2"]
    assert host.store("prod-pods").keys() == ["prod/pending-2"]
    assert host.store("deployments").keys() == ["prod/d"]
    assert [o["metadata"]["name"] for o in unused] == ["plain", "bound", "x"]
    # Filled caches count as synced.
    assert all(store.has_synced() for store in host.stores.values())


def test_offline_a_transform_that_loses_the_key_is_refused_naming_plugin_and_watch(caplog):
    def labels_only(obj):  # forgets metadata.name: every namespace would be cached under ''
        return {"metadata": {"labels": obj["metadata"].get("labels", {})}}

    def name_only(obj):  # forgets metadata.namespace: pods of two namespaces would share a key
        return {"metadata": {"name": obj["metadata"]["name"]}}

    def explodes(obj):
        raise ValueError("cannot read this one")

    watches = [Watch(name="w-namespaces", resource="namespaces", kind="Namespace", transform=labels_only),
               Watch(name="w-pods", resource="pods", kind="Pod", transform=name_only),
               Watch(name="w-nodes", resource="nodes", kind="Node", transform=explodes)]
    host = Host(Config(enabled_plugins=[]), extra_plugins=[watcher(*watches)])
    unused = host.load_objects([namespace("a"), namespace("b"), pod("web", namespace="a"),
                                pod("web", namespace="b"), node("n1")])
    # Refused, not merged, and not thrown: the host goes on with the caches it could fill.
    assert unused == [] and all(len(host.store(w.name)) == 0 for w in watches)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert [e.split(":")[0] for e in errors] == ["watch 'w-namespaces' (plugin 'watcher')",
                                                 "watch 'w-pods' (plugin 'watcher')",
                                                 "watch 'w-nodes' (plugin 'watcher')"]
    assert "its transform's result for a has no metadata.name" in errors[0]
    assert "its transform's result for a/web has no metadata.namespace" in errors[1]
    assert "its transform failed on n1: ValueError('cannot read this one')" in errors[2]

    def refused(watch, reason):
        return host.metrics.registry.get_sample_value("admission_host_watch_refused_objects_total",
                                                      {"watch": watch, "plugin": "watcher", "reason": reason})

    assert (refused("w-namespaces", "key"), refused("w-pods", "key"), refused("w-nodes", "raised")) == (2, 2, 1)
    host.start()
    assert host.readiness() == []


@pytest.mark.parametrize("selector, labels, matches", [
    ("a=b", {"a": "b"}, True),
    ("a==b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a!=b", {"a": "c"}, True),
    ("a!=b", {}, True),
    ("a!=b", {"a": "b"}, False),
    ("a", {"a": ""}, True),
    ("a", {}, False),
    ("!a", {}, True),
    ("!a", {"a": "x"}, False),
    ("a=b, c", {"a": "b", "c": "d"}, True),
    ("a=b,c", {"a": "b"}, False),
])
def test_offline_label_selector_strings(selector, labels, matches):
    assert _match_label_string(selector, labels) is matches


def test_offline_start_marks_caches_synced_and_runs_no_controller():
    ran = []
    plugin = make_plugin("p", admission_host_watches=lambda: [Watch(name="w", resource="nodes", kind="Node")],
                         admission_host_controllers=lambda: [Controller(name="c", run=ran.append)])
    host = Host(Config(enabled_plugins=[]), extra_plugins=[plugin])
    assert not host.store("w").has_synced()
    assert host.readiness() == ["watch w has not synced"]
    host.start()
    assert host.store("w").has_synced() and host.readiness() == []
    assert [c.name for c in host.controllers] == ["c"] and host.controllers[0].plugin == "p"
    host.stop()
    assert ran == []


def test_controllers_run_until_stopped_without_leader_election():
    started, stopped = threading.Event(), threading.Event()

    def run(stop):
        started.set()
        stop.wait()
        stopped.set()

    plugin = make_plugin("p", admission_host_controllers=lambda: [Controller(name="loop", run=run)])
    host = Host(Config(enabled_plugins=[], leader_election=False), kube=object(), extra_plugins=[plugin])
    host.start()
    assert started.wait(5)
    assert host.is_leader()
    assert host.metrics.registry.get_sample_value("admission_host_leader") == 1
    host.stop()
    assert stopped.is_set(), "stop() waits for controllers to return"
    assert not host.is_leader()
    assert host.metrics.registry.get_sample_value("admission_host_leader") == 0


def test_controllers_wait_for_the_caches():
    ran = threading.Event()
    plugin = make_plugin("p", admission_host_watches=lambda: [Watch(name="w", resource="nodes", kind="Node")],
                         admission_host_controllers=lambda: [Controller(name="c", run=lambda stop: ran.set())])
    host = Host(Config(enabled_plugins=[], leader_election=False), kube=object(), extra_plugins=[plugin])
    host._start_controllers()  # as an elected leader would, before the watch has listed
    assert not ran.wait(0.2)
    host.store("w").replace([])
    assert ran.wait(5)
    host._stop_controllers()


def test_shutdown_is_called_once_per_plugin_even_if_one_fails(caplog):
    calls = []

    def shutdown(name, fail):
        def fn(host):
            calls.append((name, host))
            if fail:
                raise RuntimeError("oops")
        return fn

    host = Host(Config(enabled_plugins=[]), extra_plugins=[
        make_plugin("first", admission_host_shutdown=shutdown("first", False)),
        make_plugin("second", admission_host_shutdown=shutdown("second", True)),
        make_plugin("third", admission_host_shutdown=lambda: calls.append(("third", None)))])
    host.start()
    host.stop()
    host.stop()
    # The reverse of the other hooks' order (pluggy's: the plugin registered last first); the
    # failure of one does not skip the others.
    assert calls == [("first", host), ("second", host), ("third", None)]
    assert "plugin second failed in admission_host_shutdown" in caplog.text


def test_start_is_idempotent():
    host = Host(Config(enabled_plugins=[]), extra_plugins=[watcher(Watch(name="w", resource="nodes", kind="Node"))])
    host.load_objects([node("n")])
    host.start()
    host.start()
    assert host.store("w").keys() == ["n"]


def test_host_with_a_kube_client_lists_and_watches(fake_api):
    api = fake_api(lambda req: Stream() if req.is_watch else page([node("n1")], rv="5"))
    host = Host(Config(enabled_plugins=[]), api.client(),
                extra_plugins=[watcher(Watch(name="nodes", resource="nodes", kind="Node"))])
    host.start()
    try:
        wait_for(lambda: host.readiness() == [])
        assert host.store("nodes").keys() == ["n1"]
        assert len(host.reflectors) == 1
    finally:
        host.stop()
