"""Which Selector wins for a pod: labels, namespace labels, expressions, priority, ties."""

import pytest

from framework.testing import namespace, pod

from .conftest import selector


def winner(make_harness, selectors, pod_labels=None, ns="default", objects=None):
    harness = make_harness(*selectors, objects=objects)
    result = harness.create(pod("p", namespace=ns, labels=pod_labels))
    return result.audit_annotations.get("selector")


EXPRESSION_CASES = [
    # (objectLabels, pod labels, matches?)
    ({"matchLabels": {"app": "nginx"}}, {"app": "nginx"}, True),
    ({"matchLabels": {"app": "nginx"}}, {"app": "redis"}, False),
    ({"matchLabels": {"app": "nginx", "tier": "web"}}, {"app": "nginx"}, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}, {"app": "b"}, True),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}, {}, False),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {"app": "a"}, False),
    ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"gpu": ""}, True),
    ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"app": "x"}, False),
    ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {"app": "x"}, True),
    ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {"gpu": "1"}, False),
    ({}, {"anything": "x"}, True),  # an empty selector selects everything
    ({"matchLabels": {"app": "nginx"},
      "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}, {"app": "nginx", "env": "dev"}, False),
]


@pytest.mark.parametrize("object_labels, pod_labels, matches", EXPRESSION_CASES)
def test_object_labels(make_harness, object_labels, pod_labels, matches):
    got = winner(make_harness, [selector("s", object_labels=object_labels)], pod_labels)
    assert (got == "s") is matches


def test_namespace_labels(make_harness):
    objects = [namespace("default"), namespace("prod", {"env": "prod"})]
    sels = [selector("prod-only", namespace_labels={"matchLabels": {"env": "prod"}})]
    assert winner(make_harness, sels, {"app": "x"}, ns="prod", objects=objects) == "prod-only"
    assert winner(make_harness, sels, {"app": "x"}, ns="default", objects=objects) is None


def test_namespace_name_label_is_available(make_harness):
    sels = [selector("by-name", namespace_labels={"matchLabels": {"kubernetes.io/metadata.name": "prod"}})]
    objects = [namespace("default"), namespace("prod")]
    assert winner(make_harness, sels, ns="prod", objects=objects) == "by-name"
    assert winner(make_harness, sels, ns="default", objects=objects) is None


def test_both_sides_must_match(make_harness):
    objects = [namespace("prod", {"env": "prod"}), namespace("dev", {"env": "dev"})]
    sels = [selector("both", object_labels={"matchLabels": {"app": "web"}},
                     namespace_labels={"matchLabels": {"env": "prod"}})]
    assert winner(make_harness, sels, {"app": "web"}, ns="prod", objects=objects) == "both"
    assert winner(make_harness, sels, {"app": "web"}, ns="dev", objects=objects) is None
    assert winner(make_harness, sels, {"app": "db"}, ns="prod", objects=objects) is None


def test_pod_labels_cannot_impersonate_namespace_labels(make_harness):
    objects = [namespace("tenant-a"), namespace("prod", {"env": "prod"})]
    sels = [selector("prod-only", namespace_labels={"matchLabels": {"env": "prod"}})]
    assert winner(make_harness, sels, {"env": "prod"}, ns="tenant-a", objects=objects) is None


def test_highest_priority_wins(make_harness):
    sels = [selector("low", priority=1, object_labels={"matchLabels": {"app": "x"}}),
            selector("high", priority=10, object_labels={"matchLabels": {"app": "x"}}),
            selector("negative", priority=-5)]
    assert winner(make_harness, sels, {"app": "x"}) == "high"


def test_ties_go_to_the_name_that_sorts_first(make_harness):
    sels = [selector("b-sel", priority=3), selector("a-sel", priority=3), selector("c-sel", priority=3)]
    assert winner(make_harness, sels, {"app": "x"}) == "a-sel"


def test_absent_priority_is_zero(make_harness):
    sels = [selector("zero"), selector("one", priority=1), selector("minus", priority=-1)]
    assert winner(make_harness, sels) == "one"


def test_invalid_selector_is_ignored_not_fatal(make_harness):
    bad = selector("aaa-bad", priority=100, object_labels={"matchExpressions": [{"key": "app", "operator": "In"}]})
    good = selector("good", object_labels={"matchLabels": {"app": "x"}})
    harness = make_harness(bad, good)
    assert harness.create(pod("p", labels={"app": "x"})).audit_annotations == {"selector": "good"}
    entry = harness.store("eci-selectors").get("aaa-bad")
    assert entry["selector"] is None and "at least one value" in entry["error"]


def test_unmatched_pod_is_left_alone(make_harness):
    harness = make_harness(selector("s", object_labels={"matchLabels": {"app": "nginx"}}))
    result = harness.create(pod("p", labels={"app": "other"}))
    assert result.allowed and result.patch == [] and result.warnings == []


def test_many_selectors_index(make_harness):
    sels = [selector(f"s{i:05d}", object_labels={"matchLabels": {"app": f"app-{i}"}}) for i in range(2000)]
    sels.append(selector("by-ns", priority=-1, namespace_labels={"matchLabels": {"env": "prod"}}))
    harness = make_harness(*sels)
    assert harness.create(pod("p", labels={"app": "app-1234"})).audit_annotations["selector"] == "s01234"
    assert harness.create(pod("p", namespace="prod", labels={"app": "nope"})).audit_annotations["selector"] == "by-ns"
    assert harness.create(pod("p", labels={"app": "nope"})).audit_annotations == {}
