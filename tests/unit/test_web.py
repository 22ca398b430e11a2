"""The falcon app: /mutate and its HTTP errors, /healthz, /readyz, /metrics, /plugins."""

import base64

import falcon.testing
import orjson
import pytest

from framework import Mutator, Watch
from framework.config import Config
from framework.host import Host
from framework.testing import pod, review
from framework.web.app import ServingState, create_app

from .helpers import make_plugin

JSON = {"Content-Type": "application/json"}


def label_mutator():
    def mutate(req):
        req.object["metadata"].setdefault("labels", {})["seen"] = "yes"
    return [Mutator(name="web-label", mutate=mutate)]


def web_plugin(ready=None):
    hooks = {"admission_host_mutators": label_mutator,
             "admission_host_watches": lambda: [Watch(name="web-namespaces", resource="namespaces",
                                                      kind="Namespace")]}
    if ready is not None:
        hooks["admission_host_ready"] = ready
    return make_plugin("webtest", **hooks)


def make_host(*plugins, enabled=(), start=True) -> Host:
    host = Host(Config(enabled_plugins=list(enabled)), extra_plugins=plugins or [web_plugin()])
    if start:
        host.start()
    return host


@pytest.fixture
def host():
    host = make_host()
    yield host
    host.stop()


@pytest.fixture
def client(host):
    return falcon.testing.TestClient(create_app(host))


def post(client, data, headers=JSON, path="/mutate"):
    return client.simulate_post(path, body=data, headers=headers)


def test_mutate_answers_with_a_patch(client):
    sent = review(pod("p"), uid="u-1")
    result = post(client, orjson.dumps(sent))
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    answer = result.json
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["response"]["uid"] == "u-1" and answer["response"]["allowed"] is True
    patch = orjson.loads(base64.b64decode(answer["response"]["patch"]))
    assert patch == [{"op": "add", "path": "/metadata/labels", "value": {"seen": "yes"}}]


def test_mutate_accepts_a_charset_and_a_trailing_slash(client):
    result = post(client, orjson.dumps(review(pod("p"))), {"Content-Type": "application/json; charset=utf-8"},
                  path="/mutate/")
    assert result.status_code == 200


@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"}, {"Content-Type": "application/yaml"}, {}])
def test_wrong_content_type_is_415(client, headers):
    result = post(client, orjson.dumps(review(pod("p"))), headers)
    assert result.status_code == 415
    assert "Content-Type must be application/json" in result.json["description"]


@pytest.mark.parametrize("data, says", [
    (b"", "empty body"),
    (b"{", "not valid JSON"),
    (b'{"kind": "Pod", "apiVersion": "v1"}', "kind must be AdmissionReview"),
    (orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "request": {"operation": "CREATE", "resource": {"group": "", "resource": "pods"}}}),
     "request.uid is missing"),
])
def test_broken_reviews_are_400_with_a_message(client, data, says):
    result = post(client, data)
    assert result.status_code == 400
    assert result.json["title"] == "Invalid AdmissionReview"
    assert says in result.json["description"]


def padded_review(size: int) -> bytes:
    data = orjson.dumps(review(pod("p")))
    return data + b" " * (size - len(data))


def test_body_over_the_limit_is_413(host):
    client = falcon.testing.TestClient(create_app(host, max_body_bytes=2000))
    assert post(client, padded_review(2000)).status_code == 200  # the limit itself is accepted
    result = post(client, padded_review(2001))
    assert result.status_code == 413
    assert "2000" in result.json["description"]


def test_default_limit_is_7_mib(client):
    assert post(client, padded_review(7 * 1024 * 1024)).status_code == 200
    assert post(client, padded_review(7 * 1024 * 1024 + 1)).status_code == 413


def test_unknown_path_is_404_and_get_mutate_is_405(client):
    assert client.simulate_get("/nope").status_code == 404
    assert client.simulate_post("/nope", body=b"{}", headers=JSON).status_code == 404
    assert client.simulate_get("/mutate").status_code == 405


def test_healthz(client):
    result = client.simulate_get("/healthz")
    assert result.status_code == 200 and result.text == "ok"


def test_readyz_waits_for_the_caches():
    host = make_host(start=False)
    client = falcon.testing.TestClient(create_app(host))
    result = client.simulate_get("/readyz")
    assert result.status_code == 503
    assert "watch web-namespaces has not synced" in result.text
    host.start()
    result = client.simulate_get("/readyz")
    assert result.status_code == 200 and result.text == "ok"


def test_readyz_asks_the_plugins():
    state = {"reason": "warming up"}
    host = make_host(web_plugin(ready=lambda host: state["reason"]))
    client = falcon.testing.TestClient(create_app(host))
    result = client.simulate_get("/readyz")
    assert result.status_code == 503
    assert "plugin webtest: warming up" in result.text
    state["reason"] = None
    assert client.simulate_get("/readyz").status_code == 200


def test_readyz_with_a_readiness_hook_that_takes_no_arguments():
    state = {"reason": "not yet"}
    client = falcon.testing.TestClient(create_app(make_host(web_plugin(ready=lambda: state["reason"]))))
    assert "plugin webtest: not yet" in client.simulate_get("/readyz").text
    state["reason"] = None
    assert client.simulate_get("/readyz").status_code == 200


def test_readyz_with_a_failing_readiness_check():
    def ready(host):
        raise RuntimeError("db gone")

    client = falcon.testing.TestClient(create_app(make_host(web_plugin(ready=ready))))
    result = client.simulate_get("/readyz")
    assert result.status_code == 503
    assert "plugin webtest: readiness check failed" in result.text and "db gone" in result.text


def test_readyz_is_503_while_draining(host):
    state = ServingState()
    client = falcon.testing.TestClient(create_app(host, state=state))
    assert client.simulate_get("/readyz").status_code == 200
    state.draining = True
    result = client.simulate_get("/readyz")
    assert result.status_code == 503 and "shutting down" in result.text


def test_metrics_count_requests(client):
    post(client, orjson.dumps(review(pod("p"))))
    post(client, b"nope", {"Content-Type": "text/plain"})
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    text = result.text
    assert 'admission_host_admissions_total{operation="CREATE",outcome="patched",resource="pods"} 1.0' in text
    assert 'admission_host_mutator_calls_total{mutator="web-label",outcome="ok",plugin="webtest"} 1.0' in text
    assert 'admission_host_bad_requests_total{status="415"} 1.0' in text
    assert "admission_host_admission_duration_seconds_bucket" in text


def test_plugins_lists_plugins_versions_and_hooks():
    host = make_host(web_plugin(), enabled=["pod_deletion_cost"])
    result = falcon.testing.TestClient(create_app(host)).simulate_get("/plugins")
    assert result.status_code == 200
    data = result.json
    by_name = {p["name"]: p for p in data["plugins"]}
    assert set(by_name) == {"pod_deletion_cost", "webtest"}
    assert by_name["pod_deletion_cost"]["distribution"] == "admission-host"
    assert by_name["pod_deletion_cost"]["version"]
    assert by_name["pod_deletion_cost"]["hooks"] == ["admission_host_mutators", "admission_host_options"]
    assert by_name["pod_deletion_cost"]["options"] == [
        {"name": "label", "type": "string", "required": False, "default": "example.com/deletion-cost",
         "help": "the pod label holding the cost"}]
    assert by_name["webtest"]["hooks"] == ["admission_host_mutators", "admission_host_watches"]
    assert by_name["webtest"]["version"] is None
    mutators = {m["name"]: m for m in data["mutators"]}
    assert mutators["web-label"] == {"name": "web-label", "plugin": "webtest", "order": 0, "group": "",
                                     "resources": ["pods"], "operations": ["CREATE"], "failurePolicy": "Ignore"}
    assert mutators["pod-deletion-cost"]["plugin"] == "pod_deletion_cost"
    assert data["watches"] == [{"name": "web-namespaces", "plugin": "webtest", "apiVersion": "v1",
                                "resource": "namespaces", "labelSelector": None, "fieldSelector": None,
                                "objects": 0}]
    assert data["controllers"] == []


@pytest.mark.parametrize("text, seconds", [("5s", 5.0), ("1m0s", 60.0), ("1.5s", 1.5), ("500ms", 0.5),
                                           ("1h2m3s", 3723.0), (None, None), ("", None), ("5", None),
                                           ("5x", None), ("s", None), ("-5s", None)])
def test_go_duration(text, seconds):
    from framework.web.resources import go_duration

    assert go_duration(text) == seconds


def test_the_api_servers_timeout_parameter_bounds_the_deadline():
    """kube-apiserver sends ``?timeout=<timeoutSeconds>s`` with each webhook call (rest.Request.Timeout)."""
    seen = []
    # (a budget longer than the deadline: the deadline is what it sees)
    plugin = make_plugin("deadline", admission_host_mutators=lambda: [
        Mutator(name="reads-deadline", mutate=lambda req: seen.append(req.time_left()), budget_seconds=60.0)])
    c = falcon.testing.TestClient(create_app(make_host(plugin)))
    for query in ("timeout=1s", "timeout=30s", "timeout=bogus", ""):
        resp = c.simulate_post("/mutate", body=orjson.dumps(review(pod("p"))), headers=JSON, query_string=query)
        assert resp.status_code == 200
    assert 0.7 < seen[0] <= 0.8  # 80 % of the API server's 1 s
    assert all(3.5 < left <= 4.0 for left in seen[1:])  # the host's own 4 s
