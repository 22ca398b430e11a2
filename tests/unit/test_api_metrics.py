"""Every request the host's KubeClient sends is counted in the host's metrics, by verb, resource and code."""

import pytest

from framework import ApiError, KubeClient, Watch
from framework.config import Config
from framework.host import Host
from framework.kube.client import request_info
from framework.testing import node

from .fakeapi import Reply, Stream, page, status, wait_for
from .helpers import make_plugin


@pytest.mark.parametrize("method, path, query, expected", [
    ("GET", "/api/v1/namespaces/default/pods", None, ("LIST", "pods")),
    ("GET", "/api/v1/pods", {"watch": True}, ("WATCH", "pods")),
    ("GET", "/api/v1/watch/namespaces/default/pods", None, ("WATCH", "pods")),
    ("GET", "/api/v1/namespaces/default/pods/web", None, ("GET", "pods")),
    ("PATCH", "/api/v1/namespaces/default/pods/web", None, ("PATCH", "pods")),
    ("POST", "/api/v1/namespaces/default/pods/web/binding", None, ("POST", "pods/binding")),
    ("POST", "/api/v1/namespaces/default/pods/web/eviction", None, ("POST", "pods/eviction")),
    ("PUT", "/apis/eci.aliyun.com/v1/selectors/burst/status", None, ("PUT", "selectors/status")),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ah/leases/ah", None, ("PUT", "leases")),
    ("DELETE", "/api/v1/namespaces/default/pods", None, ("DELETECOLLECTION", "pods")),
    ("GET", "/api/v1/namespaces", None, ("LIST", "namespaces")),
    ("GET", "/api/v1/namespaces/default", None, ("GET", "namespaces")),
    ("PUT", "/api/v1/namespaces/default/finalize", None, ("PUT", "namespaces/finalize")),
    ("GET", "/version", None, ("GET", "")),
    ("GET", "/apis/eci.aliyun.com/v1", None, ("GET", "")),
])
def test_verb_and_resource_as_the_api_server_counts_them(method, path, query, expected):
    assert request_info(method, path, query) == expected


def test_the_host_counts_its_clients_requests_by_verb_resource_and_code(fake_api):
    def respond(req):
        if req.is_watch:
            return Stream()
        if req.method == "PATCH":
            return Reply(409, status(409, "Conflict"))
        if req.path.endswith("/binding"):
            return Reply(201, {})
        return page([node("n1")], rv="5") if req.path == "/api/v1/nodes" else Reply(200, node("n1"))

    api = fake_api(respond)
    host = Host(Config(enabled_plugins=[]), api.client(),
                extra_plugins=[make_plugin("watcher", admission_host_watches=lambda: [
                    Watch(name="nodes", resource="nodes", kind="Node")])])
    kube = host.kube
    host.start()
    try:
        wait_for(lambda: api.seen(lambda r: r.is_watch))
        kube.get("/api/v1/nodes/n1")
        kube.post("/api/v1/namespaces/default/pods/web/binding", {"target": {"name": "n1"}})
        with pytest.raises(ApiError):
            kube.patch("/api/v1/namespaces/default/pods/web", {"metadata": {"labels": {"a": "b"}}})
    finally:
        host.stop()
    closed = KubeClient(kube.configuration)
    closed.host = "http://127.0.0.1:1"  # nothing listens there: no answer at all
    closed.metrics = host.metrics
    with pytest.raises(ApiError):
        closed.get("/api/v1/namespaces/default/pods/web", timeout=1.0)

    def count(verb, resource, code):
        return host.metrics.registry.get_sample_value("admission_host_api_requests_total",
                                                      {"verb": verb, "resource": resource, "code": code})

    assert count("LIST", "nodes", "200") == 1 and count("WATCH", "nodes", "200") >= 1
    assert count("GET", "nodes", "200") == 1
    assert count("POST", "pods/binding", "201") == 1
    assert count("PATCH", "pods", "409") == 1
    assert count("GET", "pods", "error") == 1
    assert host.metrics.registry.get_sample_value("admission_host_api_request_duration_seconds_count",
                                                  {"verb": "PATCH", "resource": "pods"}) == 1
    assert b'admission_host_api_requests_total{code="409",resource="pods",verb="PATCH"} 1.0' \
        in host.metrics.exposition()


def test_a_get_may_ask_for_another_representation():
    from framework.kube.client import METADATA_ONLY

    sent = []

    class Pool:
        def request(self, method, url, body=None, headers=None, timeout=None):
            sent.append((headers["Accept"], url.rpartition("?")[2]))

            class Resp:
                status, data = 200, b'{"items": []}'
            return Resp()

    import kubernetes.client

    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:1"
    kube = KubeClient(cfg)
    kube.pool = Pool()
    kube.get("/api/v1/pods", limit=5)
    kube.get("/api/v1/pods", accept=METADATA_ONLY, limit=5)
    assert sent == [("application/json", "limit=5"), (METADATA_ONLY, "limit=5")]  # a header, not a parameter
