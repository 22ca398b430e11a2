"""``serve --workers 2`` on a real API server: both processes serve, exactly one leads."""

import re

import pytest

from tests.e2e.host import HOST_CONFIG, HostProcess, wait_for

pytestmark = pytest.mark.e2e

LEASE = "admission-host-workers"


def test_two_workers_serve_and_exactly_one_of_them_leads(control_plane, admin, host_kubeconfig, tmp_path):
    cert, key = control_plane.certs.serving_cert("webhook-workers", ips=["127.0.0.1"])
    # Its own Lease (so the suite's host keeps leading its own), hence the admin's credentials:
    # deploy/'s Role names the one Lease it may update.
    config = HOST_CONFIG.replace("name: admission-host}", f"name: {LEASE}}}")
    host = HostProcess(tmp_path, control_plane.admin_kubeconfig, cert, key, control_plane.certs.ca_path,
                       config_text=config, extra_args=["--workers", "2"]).start()
    try:
        path = f"/apis/coordination.k8s.io/v1/namespaces/admission-host/leases/{LEASE}"

        leader = wait_for(lambda: (admin.get(path).get("spec") or {}).get("holderIdentity"), 30,
                          what="a worker holding the Lease")
        assert re.search(r"-[01]$", leader), leader

        def metrics():
            return host.get("/metrics")[1]

        # One view over both workers: the leader gauge is 1 (not 2), and both caches synced.
        wait_for(lambda: re.search(r"^admission_host_leader 1\.0$", metrics(), re.M), 30, what="leader gauge 1")
        assert re.search(r'^admission_host_cache_objects\{watch="eci-namespaces"\} [1-9]', metrics(), re.M)
        for _ in range(40):  # new connections: the kernel spreads them over the workers
            assert host.get("/readyz")[0] == 200
        log = host.log_path.read_text()
        assert "[worker 0]" in log and "[worker 1]" in log
        acquired = re.findall(r"leader election: (\S+) acquired lease", log)
        assert acquired == [leader], acquired  # the other worker never led
    finally:
        assert host.stop() == 0
