"""LabelSelector semantics (as the API server has them) and field selectors on dicts."""

import pytest

from framework.kube.labels import InvalidSelector, LabelSelector, match_fields


def expr(key, operator, *values):
    e = {"key": key, "operator": operator}
    if values:
        e["values"] = list(values)
    return e


@pytest.mark.parametrize("selector, labels, matches", [
    # empty / absent selectors match everything, even objects without labels
    (None, None, True),
    ({}, {"a": "b"}, True),
    ({"matchLabels": {}, "matchExpressions": []}, None, True),
    # matchLabels
    ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
    ({"matchLabels": {"app": "web"}}, {}, False),
    ({"matchLabels": {"app": "web"}}, None, False),
    ({"matchLabels": {"a": "1", "b": "2"}}, {"a": "1"}, False),
    # values written as YAML numbers or booleans are label strings
    ({"matchLabels": {"cost": -1000}}, {"cost": "-1000"}, True),
    ({"matchLabels": {"vnode": True}}, {"vnode": "true"}, True),
    # In
    ({"matchExpressions": [expr("env", "In", "prod", "staging")]}, {"env": "staging"}, True),
    ({"matchExpressions": [expr("env", "In", "prod")]}, {"env": "dev"}, False),
    ({"matchExpressions": [expr("env", "In", "prod")]}, {}, False),
    # NotIn: an absent key matches
    ({"matchExpressions": [expr("env", "NotIn", "prod")]}, {"env": "dev"}, True),
    ({"matchExpressions": [expr("env", "NotIn", "prod")]}, {"env": "prod"}, False),
    ({"matchExpressions": [expr("env", "NotIn", "prod")]}, {}, True),
    # Exists / DoesNotExist
    ({"matchExpressions": [expr("gpu", "Exists")]}, {"gpu": ""}, True),
    ({"matchExpressions": [expr("gpu", "Exists")]}, {}, False),
    ({"matchExpressions": [expr("gpu", "DoesNotExist")]}, {}, True),
    ({"matchExpressions": [expr("gpu", "DoesNotExist")]}, {"gpu": "x"}, False),
    # all requirements must hold
    ({"matchLabels": {"app": "web"}, "matchExpressions": [expr("env", "In", "prod"), expr("canary", "DoesNotExist")]},
     {"app": "web", "env": "prod"}, True),
    ({"matchLabels": {"app": "web"}, "matchExpressions": [expr("env", "In", "prod"), expr("canary", "DoesNotExist")]},
     {"app": "web", "env": "prod", "canary": "1"}, False),
])
def test_matching(selector, labels, matches):
    compiled = LabelSelector.parse(selector)
    assert compiled.matches(labels) is matches
    assert (compiled.explain(labels) is None) is matches


@pytest.mark.parametrize("selector, message", [
    ("app=web", "spec.objectLabels must be an object"),
    ({"matchLabels": ["app"]}, "spec.objectLabels.matchLabels must be a map"),
    ({"matchLabels": {"app": None}}, "spec.objectLabels.matchLabels['app'] must be a string"),
    ({"matchLabels": {"app": ["web"]}}, "spec.objectLabels.matchLabels['app'] must be a string"),
    ({"matchExpressions": {"key": "a"}}, "spec.objectLabels.matchExpressions must be a list"),
    ({"matchExpressions": ["a"]}, "spec.objectLabels.matchExpressions[0] must be an object"),
    ({"matchExpressions": [{"operator": "Exists"}]}, "spec.objectLabels.matchExpressions[0].key is required"),
    ({"matchExpressions": [expr("a", "Exists"), expr("b", "Equals", "x")]},
     "spec.objectLabels.matchExpressions[1].operator 'Equals' is not one of In, NotIn, Exists, DoesNotExist"),
    ({"matchExpressions": [expr("a", "In")]}, "matchExpressions[0]: operator In needs at least one value"),
    ({"matchExpressions": [expr("a", "NotIn")]}, "matchExpressions[0]: operator NotIn needs at least one value"),
    ({"matchExpressions": [expr("a", "Exists", "x")]}, "matchExpressions[0]: operator Exists takes no values"),
    ({"matchExpressions": [expr("a", "DoesNotExist", "x")]}, "operator DoesNotExist takes no values"),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}, "matchExpressions[0].values must be a list"),
])
def test_invalid_selectors_say_what_is_wrong(selector, message):
    with pytest.raises(InvalidSelector) as info:
        LabelSelector.parse(selector, where="spec.objectLabels")
    assert message in str(info.value)


def test_explain_names_the_failing_requirement():
    selector = LabelSelector.parse({"matchLabels": {"app": "web"},
                                    "matchExpressions": [expr("env", "In", "prod", "dev")]})
    assert selector.explain({"app": "db"}) == "needs app=web, has app=db"
    assert selector.explain({}) == "needs app=web, has no app"
    assert selector.explain({"app": "web", "env": "qa"}) == "needs env In (dev,prod), has env=qa"
    assert LabelSelector.parse({"matchExpressions": [expr("x", "Exists")]}).explain({}) == "needs x Exists, has no x"


def test_is_empty():
    assert LabelSelector.parse(None).is_empty()
    assert LabelSelector.parse({"matchLabels": {}}).is_empty()
    assert not LabelSelector.parse({"matchLabels": {"a": "b"}}).is_empty()


POD = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": ""},
       "status": {"phase": "Pending"}}


@pytest.mark.parametrize("selector, matches", [
    (None, True),
    ("", True),
    ("spec.nodeName=", True),
    ("spec.nodeName==", True),
    ("spec.nodeName!=", False),
    ("metadata.name=p", True),
    ("metadata.name=q", False),
    ("metadata.namespace=ns,status.phase=Pending", True),
    ("metadata.namespace=ns,status.phase!=Pending", False),
    ("status.phase!=Failed", True),
    ("spec.schedulerName=", True),  # an absent field is the empty string, as on the API server
    ("spec.schedulerName!=", False),
    ("metadata.name=p, ", True),
])
def test_field_selectors(selector, matches):
    assert match_fields(selector, POD) is matches


def test_field_selector_on_a_bound_pod():
    assert not match_fields("spec.nodeName=", {"spec": {"nodeName": "n1"}})
    assert match_fields("spec.nodeName=n1", {"spec": {"nodeName": "n1"}})
