"""``admission-host serve`` with no cluster: for trying plugins, and for plugins that need none."""

import os
import subprocess
import sys

import yaml

from framework.testing import pod, review

from .conftest import NO_CLUSTER, REPO, CertFiles, ServerProcess, decoded_patch

def test_local_serves_eci_profile_with_selectors_from_files(ca, tmp_path):
    objects = tmp_path / "objects.yaml"
    objects.write_text((REPO / "deploy/examples/virtual-node-only.yaml").read_text())
    tls = CertFiles(ca, tmp_path, "local")
    server = ServerProcess(["--plugins", "eci_profile", "--local", "--objects", str(objects),
                            "--tls-cert-file", str(tls.cert_path), "--tls-private-key-file", str(tls.key_path)],
                           ca=ca, env=NO_CLUSTER)
    try:
        server.wait_ready()
        selector = yaml.safe_load(objects.read_text())
        labels = selector["spec"]["objectLabels"]["matchLabels"]
        answer = server.mutate(review(pod("web", labels=dict(labels))))
        paths = {op["path"] for op in decoded_patch(answer)}
        assert "/spec/tolerations" in paths and "/spec/nodeSelector" in paths, answer
        assert "controllers off" in server.output()
    finally:
        assert server.stop() == 0


def test_with_no_cluster_a_host_whose_plugins_watch_nothing_serves_locally(tmp_path):
    server = ServerProcess(["--plugins", "pod_deletion_cost", "--insecure-http"], ca=None, env=NO_CLUSTER)
    try:
        server.wait_ready()
        server.assert_serving()
    finally:
        assert server.stop() == 0


def test_with_no_cluster_plugins_that_watch_say_what_to_do():
    proc = subprocess.run([sys.executable, "-m", "framework.cli", "serve", "--plugins", "eci_profile",
                           "--insecure-http", "--port", "0"], capture_output=True, text=True, timeout=60,
                          cwd=str(REPO), env={**os.environ, **NO_CLUSTER})
    assert proc.returncode == 2
    assert "plugins watch eci-namespaces" in proc.stderr and "--local with --objects" in proc.stderr
