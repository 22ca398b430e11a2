"""Hostile input on POST /mutate: arbitrary JSON, wrong types in every field, deep nesting, huge
strings. The host answers 4xx or an AdmissionReview, never a 500, and keeps answering."""

import base64
import json

import jsonpatch
import orjson
import pytest
from falcon import testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framework.config import Config
from framework.host import Host
from framework.testing import namespace, node
from framework.web.app import create_app

SELECTORS = [
    {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "all-fair"},
     "spec": {"policy": {"fair": {}}, "effect": {"annotations": {"a": "b"}, "labels": {"c": "d"}}}},
    {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "vno"},
     "spec": {"policy": {"virtualNodeOnly": {}}, "priority": 5,
              "objectLabels": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
              "effect": {"annotations": {"x": "1"}}}},
]

json_scalars = st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=25)
label_maps = st.dictionaries(st.sampled_from(["app", "tier", "foo", "a/b", ""]), json_values | st.text(max_size=5), max_size=3)


def pods():
    meta = st.fixed_dictionaries({}, optional={"name": json_values | st.text(max_size=8), "namespace": json_values,
                                               "labels": json_values | label_maps, "annotations": json_values | label_maps})
    spec = st.fixed_dictionaries({}, optional={"tolerations": json_values | st.lists(json_values, max_size=3),
                                               "nodeSelector": json_values | label_maps,
                                               "nodeName": json_values | st.sampled_from(["vk", "n1"]),
                                               "containers": json_values})
    return st.fixed_dictionaries({"kind": st.sampled_from(["Pod", "Binding", "Other"])},
                                 optional={"metadata": meta | json_values, "spec": spec | json_values,
                                           "target": json_values | st.fixed_dictionaries({"name": st.sampled_from(["vk", "n1", ""])})})


def reviews():
    request = st.fixed_dictionaries(
        {"uid": st.text(min_size=1, max_size=10)},
        optional={"kind": json_values, "operation": st.sampled_from(["CREATE", "UPDATE", ""]) | json_values,
                  "resource": st.fixed_dictionaries({"resource": st.sampled_from(["pods", "deployments"])},
                                                    optional={"group": json_values | st.just("")}) | json_values,
                  "subResource": st.sampled_from(["", "binding", "status"]) | json_values,
                  "namespace": st.sampled_from(["default", "", "missing"]) | json_values,
                  "name": json_values, "dryRun": json_values, "userInfo": json_values,
                  "object": pods() | json_values, "oldObject": json_values, "options": json_values})
    return st.fixed_dictionaries({"apiVersion": st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]),
                                  "kind": st.just("AdmissionReview"), "request": request})


@pytest.fixture(scope="module")
def client():
    host = Host(Config(enabled_plugins=["eci_profile", "pod_deletion_cost"]))
    host.load_objects([namespace("default"), node("vk", {"k8s.aliyun.com/vnode": "true"}), node("n1"), *SELECTORS])
    host.start()
    yield testing.TestClient(create_app(host, max_body_bytes=64 * 1024))
    host.stop()


def post(client, body: bytes):
    return client.simulate_post("/mutate", body=body, headers={"Content-Type": "application/json"})


def check(client, sent: bytes):
    resp = post(client, sent)
    assert resp.status_code in (200, 400, 413), (resp.status_code, resp.text[:300])
    if resp.status_code == 200:
        review = json.loads(sent)
        answer = resp.json
        assert answer["apiVersion"] == review["apiVersion"]
        assert answer["response"]["uid"] == review["request"]["uid"]
        if "patch" in answer["response"]:
            patch = orjson.loads(base64.b64decode(answer["response"]["patch"]))
            jsonpatch.apply_patch(review["request"]["object"], patch)  # applies cleanly
    else:
        assert resp.json["title"] and resp.json.get("description")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reviews())
def test_admission_reviews_with_wrong_types_everywhere(client, review):
    check(client, orjson.dumps(review))


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_is_a_clear_400(client, value):
    resp = post(client, orjson.dumps(value))
    assert resp.status_code == 400 and resp.json["description"]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(client, data):
    assert post(client, data).status_code in (400,)


def test_deep_nesting_and_huge_strings(client):
    deep = "[" * 100_000 + "]" * 100_000
    assert post(client, deep.encode()).status_code in (400, 413)
    nested = {}
    cur = nested
    for _ in range(200):
        cur["x"] = {}
        cur = cur["x"]
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u", "operation": "CREATE", "resource": {"resource": "pods"}, "namespace": "default",
                          "object": {"kind": "Pod", "metadata": {"labels": {"app": "x" * 40_000}}, "spec": nested}}}
    check(client, orjson.dumps(review))
    assert post(client, b'{"a":"' + b"x" * 70_000 + b'"}').status_code == 413
    # Still serving.
    ok = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "after", "operation": "CREATE", "resource": {"resource": "pods"}, "namespace": "default",
                      "object": {"kind": "Pod", "metadata": {"name": "p", "labels": {"app": "a"}}, "spec": {}}}}
    resp = post(client, orjson.dumps(ok))
    assert resp.status_code == 200 and resp.json["response"]["patch"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reviews())
def test_no_internal_errors(client, review):
    """Odd shapes may make a plugin skip (its failure policy), never the host itself fail."""
    resp = post(client, orjson.dumps(review))
    if resp.status_code == 200:
        assert not any("internal error" in w for w in resp.json["response"].get("warnings") or ())
