"""``admission-host serve`` with no cluster: for trying plugins, and for plugins that need none."""

import json
import os
import subprocess
import sys

import yaml

from framework.testing import node, pod, review

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


def test_local_says_what_its_files_cannot_fill_and_answers_the_reviews_piped_to_it(tmp_path):
    """A Deployment and a misspelt kind are reported, not silently dropped, as is the watched kind
    the files lack; a pod's creation and its binding, printed by ``admission-host review``, go
    through curl to the host as the API server would send them."""
    web = pod("web", labels={"app": "nginx"})
    objects = tmp_path / "objects.yaml"
    objects.write_text((REPO / "deploy/examples/fair.yaml").read_text() + "---\n" + yaml.safe_dump_all([
        node("vk-1", {"k8s.aliyun.com/vnode": "true"}), web,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}},
        {"apiVersion": "v1", "kind": "Namespaces", "metadata": {"name": "default"}}]))
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(web))
    server = ServerProcess(["--plugins", "eci_profile", "--local", "--objects", str(objects), "--insecure-http"],
                           ca=None, env=NO_CLUSTER)
    try:
        server.wait_ready()
        watched = "watched: Namespace (v1), Node (v1), Pod (v1), Selector (eci.aliyun.com/v1)"
        log = server.output()
        assert f"WARNING admission_host: {objects}: 1 Deployment (apps/v1) object not loaded: no plugin watches " \
               f"that kind; {watched}\n" in log, log
        assert f"{objects}: 1 Namespaces (v1) object not loaded: no plugin watches that kind (did you mean " \
               f"Namespace (v1)?); {watched}\n" in log, log
        assert "plugin eci_profile watches Namespace (v1) but the --objects files hold none; its cache " \
               "eci-namespaces is empty\n" in log, log

        def sent(*args):
            """``admission-host review pod.yaml ARGS | curl ...``: the review sent, and the answer."""
            proc = subprocess.run(
                f"{sys.executable} -m framework.cli review pod.yaml {' '.join(args)} | tee review.json "
                f"| curl -sS -H 'Content-Type: application/json' --data-binary @- http://127.0.0.1:{server.port}/mutate",
                shell=True, cwd=str(tmp_path), capture_output=True, text=True, timeout=60,
                env={**os.environ, "PYTHONPATH": str(REPO)})
            assert proc.returncode == 0, proc.stderr
            answer = json.loads(proc.stdout)
            assert answer["response"]["uid"] == json.loads((tmp_path / "review.json").read_text())["request"]["uid"]
            return answer

        toleration = {"key": "k8s.aliyun.com/vnode", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        assert decoded_patch(sent()) == [{"op": "add", "path": "/spec/tolerations", "value": [toleration]}]
        # Bound to the virtual node: the Selector's effect on the Binding (the pod is in the cache); the
        # API server copies its annotations, and since 1.35 its labels, onto the pod.
        assert decoded_patch(sent("--binding", "vk-1")) == [
            {"op": "add", "path": "/metadata/annotations", "value": {"foo": "boo"}},
            {"op": "add", "path": "/metadata/labels", "value": {"foo": "boo", "eci.aliyun.com/selector": "test-fair"}}]
        assert decoded_patch(sent("--operation", "DELETE")) == []
    finally:
        assert server.stop() == 0
