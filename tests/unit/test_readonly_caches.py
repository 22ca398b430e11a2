"""No mutator, by any sequence of edits, changes what a cache holds (or another plugin's own data).

The case found by a plugin author: one plugin put a cached dict into the pod, another edited the
pod in place, and the cache itself changed: every later pod got more of it.
"""

import copy

import orjson
import pytest

from framework import FAIL, Mutator, ReadOnlyError, Watch, thaw
from framework.kube.store import Store
from framework.testing import PluginHarness, pod

from .helpers import make_plugin

DEFAULTS = {"metadata": {"name": "defaults", "namespace": "kube-system"},
            "data": {"team": "platform"}, "tolerations": [{"key": "spot", "operator": "Exists"}],
            "spec": {"priority": 7, "containers": [{"name": "c", "image": "nginx"}]}}


CACHED = {"apiVersion": "v1", "kind": "ConfigMap", **DEFAULTS}
EXPECTED = orjson.dumps(CACHED)  # as it was at the start, kept encoded


def watch_plugin():
    return make_plugin("cached", admission_host_watches=lambda: [
        Watch(name="defaults", resource="configmaps", kind="ConfigMap")])


def harness(*mutators):
    """A harness with the cache ``defaults`` and the mutators given, each in a plugin of its own."""
    plugins = [("cached", watch_plugin())]
    for i, mutator in enumerate(mutators):
        plugins.append((f"p{i}", make_plugin(f"p{i}", admission_host_mutators=lambda m=mutator: [m])))
    return PluginHarness(*plugins, objects=[copy.deepcopy(CACHED)])


def cached(h):
    return h.store("defaults").get_by_name("defaults", "kube-system")


def unchanged(h):
    return orjson.dumps(cached(h)) == EXPECTED


# (what the first plugin puts into the pod, then what the second does to the pod)
SHARING = {
    "annotations-dict": (lambda req, c: req.object["metadata"].__setitem__("annotations", c["data"]),
                         lambda req: req.object["metadata"]["annotations"].__setitem__("seen", "yes")),
    "tolerations-list": (lambda req, c: req.object["spec"].__setitem__("tolerations", c["tolerations"]),
                         lambda req: req.object["spec"]["tolerations"].append({"key": "more"})),
    "nested-element": (lambda req, c: req.object["spec"].__setitem__("tolerations", [c["tolerations"][0]]),
                       lambda req: req.object["spec"]["tolerations"][0].__setitem__("effect", "NoSchedule")),
    "whole-spec": (lambda req, c: req.object.__setitem__("spec", c["spec"]),
                   lambda req: req.object["spec"]["containers"][0].__setitem__("image", "evil")),
    "whole-object": (lambda req, c: setattr(req, "object", {**c, "kind": "Pod"}),
                     lambda req: req.object["data"].__setitem__("team", "mine")),
}


@pytest.mark.parametrize("case", sorted(SHARING))
def test_a_cached_object_put_into_the_pod_is_copied_before_the_next_plugin_edits_it(case):
    put, edit = SHARING[case]
    with harness(Mutator(name="shares", order=1, mutate=lambda req: put(req, cached(h))),
                 Mutator(name="edits", order=2, mutate=edit)) as h:
        for _ in range(3):
            result = h.create(pod("p"))
            assert result.allowed and not result.warnings, result
        assert unchanged(h)


def test_editing_a_cached_object_directly_fails_that_mutator_alone():
    def meddles(req):
        cached(h)["data"]["team"] = "mine"

    def also_meddles(req):
        cached(h)["tolerations"].append({"key": "x"})

    with harness(Mutator(name="annotates", order=1,
                         mutate=lambda req: req.object["metadata"].setdefault("labels", {}).update(a="1")),
                 Mutator(name="meddles", order=2, mutate=meddles),
                 Mutator(name="also-meddles", order=3, mutate=also_meddles)) as h:
        result = h.create(pod("p"))
        assert result.allowed and result.object["metadata"]["labels"]["a"] == "1"
        assert sum("read-only" in w for w in result.warnings) == 2
        assert unchanged(h)


def test_a_fail_policy_mutator_that_edits_the_cache_denies():
    with harness(Mutator(name="meddles", failure_policy=FAIL,
                         mutate=lambda req: cached(h)["spec"].update(priority=0))) as h:
        result = h.create(pod("p"))
        assert not result.allowed and "read-only" in result.status["message"]
        assert unchanged(h)


def test_a_plugins_own_data_is_not_changed_through_the_pod():
    own = {"team": "platform"}
    with harness(Mutator(name="shares", order=1, mutate=lambda req: req.object["metadata"].__setitem__("labels", own)),
                 Mutator(name="edits", order=2,
                         mutate=lambda req: req.object["metadata"]["labels"].__setitem__("x", "y"))) as h:
        first, second = h.create(pod("a")), h.create(pod("b"))
    assert own == {"team": "platform"}
    assert first.object["metadata"]["labels"] == second.object["metadata"]["labels"] == {"team": "platform", "x": "y"}


def test_cached_objects_read_as_json_and_copy_into_editable_objects():
    store = Store("s")
    store.upsert(copy.deepcopy(DEFAULTS))
    obj = store.get_by_name("defaults", "kube-system")
    assert isinstance(obj, dict) and obj == DEFAULTS and orjson.loads(orjson.dumps(obj)) == DEFAULTS
    for editable in (thaw(obj), copy.deepcopy(obj)):
        editable["data"]["team"] = "mine"
        editable["tolerations"].append({})
    for change in (lambda: obj.__setitem__("x", 1), lambda: obj["data"].pop("team"),
                   lambda: obj["tolerations"].extend([1]), lambda: obj["spec"]["containers"][0].clear(),
                   lambda: obj.setdefault("y", 2), lambda: obj["tolerations"].sort()):
        with pytest.raises(ReadOnlyError):
            change()
    assert store.get_by_name("defaults", "kube-system") == DEFAULTS
