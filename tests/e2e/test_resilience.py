"""Faults: the API server restarts, the host restarts, Selectors come and go."""

from tests.e2e.conftest import TOLERATION
from tests.e2e.host import wait_for
from tests.e2e.test_operability import metric


def fair(name, app):
    return {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
            "spec": {"objectLabels": {"matchLabels": {"app": app}}, "policy": {"fair": {}}}}


def tolerated(pod) -> bool:
    return TOLERATION in (pod["spec"].get("tolerations") or [])


def test_api_server_restart_caches_resync(k8s):
    ns = k8s.namespace()
    k8s.apply_selector(fair(f"{k8s.id}-a", k8s.id))
    k8s.cp.restart_apiserver()
    # A Selector created after the restart must reach the host through its re-established watch.
    k8s.apply_selector(fair(f"{k8s.id}-b", f"{k8s.id}-b"))
    assert tolerated(k8s.pod("after-a", ns, labels={"app": k8s.id}))
    assert tolerated(k8s.pod("after-b", ns, labels={"app": f"{k8s.id}-b"}))


def test_host_restart_never_blocks_pod_creation(k8s):
    ns = k8s.namespace()
    k8s.apply_selector(fair(f"{k8s.id}-a", k8s.id))
    assert k8s.host.stop() == 0
    try:
        down = k8s.pod("while-down", ns, labels={"app": k8s.id})  # failurePolicy Ignore
        assert not tolerated(down)
    finally:
        k8s.host.start()
    assert tolerated(k8s.pod("after", ns, labels={"app": k8s.id}))


def test_delete_and_recreate_selector(k8s):
    ns = k8s.namespace()
    name = f"{k8s.id}-sel"
    k8s.apply_selector(fair(name, k8s.id))
    assert tolerated(k8s.pod("one", ns, labels={"app": k8s.id}))
    k8s.delete_selector(name)
    assert not tolerated(k8s.pod("two", ns, labels={"app": k8s.id}))
    body = fair(name, k8s.id)
    body["spec"]["policy"] = {"virtualNodeOnly": {}}
    k8s.apply_selector(body)
    three = k8s.pod("three", ns, labels={"app": k8s.id})
    assert tolerated(three) and three["spec"]["nodeSelector"] == {"k8s.aliyun.com/vnode": "true"}


def test_dry_run_creation_is_mutated_without_side_effects(k8s):
    ns = k8s.namespace()
    name = f"{k8s.id}-a"
    k8s.apply_selector(fair(name, k8s.id))
    pods = f"/api/v1/namespaces/{ns}/pods"
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dry", "labels": {"app": k8s.id}},
            "spec": {"containers": [{"name": "main", "image": "nginx"}]}}
    answer = k8s.admin.post(pods, body, dryRun="All")
    assert tolerated(answer)

    def matched() -> float:
        try:
            return metric(k8s.host.get("/metrics")[1], "eci_profile_selector_matches_total", selector=name,
                          policy="fair", phase="create")
        except AssertionError:  # no sample yet
            return 0.0
    assert wait_for(matched, 10, what="the dry run counted by the host") == 1
    # Nothing was stored, by the API server or by the host: no pod, no Event, and the name is free.
    assert not k8s.admin.get(pods).get("items")
    assert not k8s.admin.get(f"/api/v1/namespaces/{ns}/events").get("items")
    assert tolerated(k8s.admin.post(pods, body))
    assert matched() == 2


def test_host_starts_without_api_server_and_recovers(k8s, host_kubeconfig, tmp_path):
    from tests.e2e.host import HostProcess

    cert, key = k8s.cp.certs.serving_cert("webhook-2", ips=["127.0.0.1"])
    k8s.cp.stop_apiserver()
    api_up = False
    second = HostProcess(tmp_path / "second", host_kubeconfig, cert, key, k8s.cp.certs.ca_path)
    try:
        second.start(wait=False)

        def healthy():
            try:
                return second.get("/healthz")[0] == 200
            except OSError:  # not listening yet
                return False
        wait_for(healthy, 20, what="healthz while the API server is down")
        status, body = second.get("/readyz")
        assert status == 503 and "has not synced" in body
        k8s.cp.start_apiserver()
        api_up = True
        second.wait_ready(60)
    finally:
        if not api_up:
            k8s.cp.start_apiserver()
        second.stop()
    assert second.proc.returncode == 0
