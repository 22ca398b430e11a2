"""Checks that the e2e harness brings up a working Kubernetes control plane."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.e2e.cluster import ControlPlane, create_node, selected_release

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def core(cluster):
    api = cluster.api_client()
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


def wait_for(predicate, timeout=10.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def test_control_plane_serves_api(cluster, core):
    version = client.VersionApi(cluster.api_client()).get_code()
    assert version.git_version.startswith("v%s." % selected_release().minor)
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system"} <= names
    assert cluster.admin_kubeconfig.is_file()


def test_admin_token_authenticates(cluster):
    cfg = client.Configuration()
    cfg.host = cluster.server
    cfg.ssl_ca_cert = str(cluster.certs.ca_path)
    cfg.api_key = {"authorization": "Bearer " + cluster.admin_token}
    with client.ApiClient(cfg) as api:
        client.CoreV1Api(api).list_node()


def test_created_node_is_ready(core):
    create_node(core, "node-ready", labels={"pool": "a"}, cpu="4", memory="8Gi")
    node = core.read_node("node-ready")
    ready = [c for c in node.status.conditions if c.type == "Ready"]
    assert ready and ready[0].status == "True"
    assert node.status.allocatable["cpu"] == "4"
    assert node.metadata.labels["pool"] == "a"
    assert not node.spec.taints


def test_scheduler_binds_pod_to_node(core):
    create_node(core, "node-sched", labels={"pool": "sched"})
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="sched-me"),
        spec=client.V1PodSpec(
            node_selector={"pool": "sched"},
            containers=[client.V1Container(name="c", image="registry.invalid/pause:1")],
        ),
    )
    core.create_namespaced_pod("default", pod)
    started = time.monotonic()
    bound = wait_for(lambda: core.read_namespaced_pod("sched-me", "default").spec.node_name,
                     timeout=10, what="the scheduler to bind the pod")
    assert bound == "node-sched"
    assert time.monotonic() - started < 5


def test_tainted_node_is_avoided_until_tolerated(core):
    create_node(core, "node-tainted", labels={"pool": "tainted"},
                taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="needs-toleration"),
        spec=client.V1PodSpec(
            node_selector={"pool": "tainted"},
            containers=[client.V1Container(name="c", image="registry.invalid/pause:1")],
        ),
    )
    core.create_namespaced_pod("default", pod)

    def unschedulable():
        conds = core.read_namespaced_pod("needs-toleration", "default").status.conditions or []
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conds)

    wait_for(unschedulable, what="the pod to be reported Unschedulable")
    core.patch_namespaced_pod("needs-toleration", "default", {"spec": {"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]}})
    bound = wait_for(lambda: core.read_namespaced_pod("needs-toleration", "default").spec.node_name,
                     what="the tolerating pod to be bound")
    assert bound == "node-tainted"


def test_restart_apiserver(cluster, core):
    core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="survives"), data={"k": "v"}))
    started = time.monotonic()
    cluster.restart_apiserver()
    restart_s = time.monotonic() - started
    # The existing client reconnects on its own; data lives in etcd.
    assert core.read_namespaced_config_map("survives", "default").data == {"k": "v"}
    assert core.list_node().items
    assert restart_s < 30


def test_stop_and_start_apiserver(cluster, core):
    cluster.stop_apiserver()
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.CoreV1Api(cluster.api_client()).list_namespace(_request_timeout=2)
    cluster.start_apiserver()
    assert core.list_namespace().items


def test_scheduler_still_binds_after_restart(core):
    # The scheduler's watches must re-establish after the API server restarts.
    create_node(core, "node-after", labels={"pool": "after"})
    core.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name="after-restart"),
        spec=client.V1PodSpec(node_selector={"pool": "after"},
                              containers=[client.V1Container(name="c", image="x")])))
    bound = wait_for(lambda: core.read_namespaced_pod("after-restart", "default").spec.node_name,
                     timeout=30, what="binding after an API server restart")
    assert bound == "node-after"


def test_service_account_token_request_authenticates(cluster, core, tmp_path):
    ns = "sa-test"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot")))
    tr = core.create_namespaced_service_account_token(
        "robot", ns, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)))
    token = tr.status.token
    assert token

    kubeconfig = cluster.write_kubeconfig(tmp_path / "robot.kubeconfig", token=token)
    from kubernetes import config as kconfig

    sa_api = kconfig.new_client_from_config(config_file=str(kubeconfig))
    try:
        # Authenticated (not 401) but not authorized by RBAC (403) ...
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(sa_api).list_namespaced_secret(ns)
        assert err.value.status == 403
        assert "system:serviceaccount:%s:robot" % ns in err.value.body
        # ... and the API server resolves the identity.
        review = client.AuthorizationV1Api(sa_api).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    namespace=ns, verb="list", resource="secrets"))))
        assert review.status.allowed is False
    finally:
        sa_api.close()

    # A garbage token is rejected with 401, so the 403 above is meaningful.
    bad = cluster.write_kubeconfig(tmp_path / "bad.kubeconfig", token="not-a-token")
    bad_api = kconfig.new_client_from_config(config_file=str(bad))
    try:
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(bad_api).list_namespaced_secret(ns)
        assert err.value.status == 401
    finally:
        bad_api.close()


def test_custom_resource_write(cluster):
    # The vendored reflect2 v1.0.1 crashed the API server on the first
    # custom-resource write (build.sh swaps in 1.0.2); this guards that fix.
    with cluster.api_client() as api:
        ext = client.ApiextensionsV1Api(api)
        ext.create_custom_resource_definition({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.e2e.example.com"},
            "spec": {
                "group": "e2e.example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
            },
        })

        def established():
            crd = ext.read_custom_resource_definition("widgets.e2e.example.com")
            return any(c.type == "Established" and c.status == "True"
                       for c in (crd.status.conditions or []))

        wait_for(established, what="the CRD to be established")
        custom = client.CustomObjectsApi(api)
        body = {"apiVersion": "e2e.example.com/v1", "kind": "Widget",
                "metadata": {"name": "w1"}, "spec": {"size": 3}}
        # Discovery of a new CRD can lag "Established" briefly.
        wait_for(lambda: _try_create(custom, body), what="the custom resource create")
        got = custom.get_namespaced_custom_object("e2e.example.com", "v1", "default", "widgets", "w1")
        assert got["spec"] == {"size": 3}
        custom.patch_namespaced_custom_object("e2e.example.com", "v1", "default", "widgets", "w1",
                                              {"spec": {"size": 4}})
    assert client.CoreV1Api(cluster.api_client()).list_namespace().items  # still alive


def _try_create(custom, body):
    try:
        custom.create_namespaced_custom_object("e2e.example.com", "v1", "default", "widgets", body)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def test_webhook_serving_cert_is_trusted_via_ca(cluster):
    cert, key = cluster.certs.serving_cert("webhook-test", dns=["localhost"], ips=["127.0.0.1"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    client_ctx = ssl.create_default_context(cadata=cluster.certs.ca_pem.decode())

    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]

        def serve(n):
            for _ in range(n):
                conn, _ = srv.accept()
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)

        names = ["127.0.0.1", "localhost"]
        t = threading.Thread(target=serve, args=(len(names),), daemon=True)
        t.start()
        for name in names:  # hostname verification against the IP and DNS SANs
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with client_ctx.wrap_socket(raw, server_hostname=name) as tls:
                    assert tls.getpeercert()["subject"]
                    tls.sendall(b"x")
        t.join(5)
