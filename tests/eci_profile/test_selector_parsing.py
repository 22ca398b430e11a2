"""Selector validation: what the CRD schema cannot catch is caught here, with a reason."""

import pytest

from plugins.eci_profile.selectors import InvalidSelectorSpec, parse

from .conftest import seed, selector


@pytest.mark.parametrize("name", ["fair-eip.yaml", "fair-pod-deletion-cost.yaml", "fair.yaml",
                                  "normal-node-prefer.yaml", "virtual-node-only.yaml"])
def test_seed_examples_parse(name):
    sel = parse(seed(name))
    assert sel.policy in ("fair", "normalNodePrefer", "virtualNodeOnly")


def test_integer_effect_values_become_strings():
    sel = parse(seed("fair-pod-deletion-cost.yaml"))
    assert sel.annotations == {"controller.kubernetes.io/pod-deletion-cost": "-1000"}
    assert sel.priority == 3


def test_priority_defaults_to_zero():
    assert parse(seed("virtual-node-only.yaml")).priority == 0


@pytest.mark.parametrize("spec, reason", [
    ({"policy": {}}, "exactly one"),
    ({"policy": {"fair": {}, "virtualNodeOnly": {}}}, "exactly one"),
    ({"policy": {"sometimes": {}}}, "unknown policy 'sometimes'"),
    ({"policy": {"fair": {}}, "priority": 2 ** 31}, "int32"),
    ({"policy": {"fair": {}}, "priority": "high"}, "int32"),
    ({"policy": {"fair": {}}, "objectLabels": {"matchExpressions": [{"key": "a", "operator": "Like"}]}},
     "operator 'Like'"),
    ({"policy": {"fair": {}}, "objectLabels": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
     "at least one value"),
    ({"policy": {"fair": {}}, "namespaceLabels": {"matchExpressions": [{"key": "a", "operator": "Exists",
                                                                         "values": ["x"]}]}},
     "takes no values"),
    ({"policy": {"fair": {}}, "effect": {"labels": {"foo": "not a label value"}}}, "not a valid label value"),
    ({"policy": {"fair": {}}, "effect": {"annotations": {"bad key!": "x"}}}, "invalid key"),
    ({"policy": {"fair": {}}, "effect": {"annotations": {"a": {"nested": 1}}}}, "string or an integer"),
])
def test_invalid_selectors_say_why(spec, reason):
    with pytest.raises(InvalidSelectorSpec, match=reason):
        parse({"metadata": {"name": "x"}, "spec": spec})


def test_both_sides_absent_matches_everything():
    sel = parse(selector("all"))
    assert sel.matches({}, {}) and sel.matches({"a": "b"}, {"c": "d"})
