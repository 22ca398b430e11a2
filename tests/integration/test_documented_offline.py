"""The documented commands that need no cluster, run as the documents write them.

Each test takes its command from the documents (``documented``) and runs it with bash, changing
only what cannot stay as written: a fixed port becomes a free one, ``~/.kube/config`` a real file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

import pytest
import yaml

from framework.testing import namespace, pod, review
from tests.documented import ROOT, doc_blocks, documented, run
from tests.e2e import cluster
from tests.e2e.cluster import free_port
from tests.integration.conftest import CertFiles, decoded_patch

NO_CLUSTER = {"KUBECONFIG": "/nonexistent/kubeconfig"}
TOLERATION = {"key": "k8s.aliyun.com/vnode", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
def kubectl_first() -> tuple:
    """PATH's first folder for commands that run kubectl: the project's own (tests/e2e/cluster.py),
    never a skip when the machine has none."""
    return (os.path.dirname(cluster.kubectl_path(cluster.CURRENT)),)


@pytest.fixture(scope="module", autouse=True)
def installed():
    assert shutil.which("admission-host"), "the admission-host command is not installed (pip install -e .)"


@pytest.fixture
def workdir(tmp_path) -> Path:
    """Where a user runs the README's commands: deploy/ at hand, a pod and its namespace beside it."""
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod("web", namespace="shop", labels={"app": "nginx"})))
    (tmp_path / "namespaces.yaml").write_text(yaml.safe_dump(namespace("shop")))
    return tmp_path


# -- admission-host, offline ------------------------------------------------------------------------------
def test_readme_mutate_with_a_seed_selector(workdir):
    command = documented("admission-host mutate pod.yaml --objects deploy/examples/virtual-node-only.yaml "
                         "namespaces.yaml -o object", "README.md")
    mutated = json.loads(run(command, cwd=workdir).stdout)
    assert mutated["spec"]["tolerations"] == [TOLERATION]
    assert mutated["spec"]["nodeSelector"] == {"k8s.aliyun.com/vnode": "true"}
    # virtualNodeOnly: the effect at creation already.
    assert mutated["metadata"]["labels"] == {"app": "nginx", "foo": "boo"}
    assert mutated["metadata"]["annotations"] == {"foo": "boo"}


def test_readme_explain_offline(workdir):
    command = documented("admission-host explain pod.yaml --objects deploy/examples/*.yaml", "README.md")
    out = run(command, cwd=workdir).stdout
    for name in ("test-fair", "test-normal-node-prefer", "test-virtual-node-only"):
        assert f"Selector {name} (" in out, out
    assert "winner: test-fair (fair), highest priority (3)" in out, out
    assert "add /spec/tolerations" in out, out


def test_selectors_explain_offline(tmp_path):
    """The reference's own Selector: a pod it selects, and one its NotIn leaves out."""
    command = documented("admission-host explain pod.yaml --objects selectors.yaml namespaces.yaml",
                         "docs/selectors.md")
    (tmp_path / "selectors.yaml").write_text(doc_blocks("docs/selectors.md", "yaml")[0])
    (tmp_path / "namespaces.yaml").write_text(yaml.safe_dump(namespace("shop", {"team": "web"})))
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod("web", namespace="shop", labels={"app": "nginx"})))
    out = run(command, cwd=tmp_path).stdout
    assert "Selector test-fair (priority 3, fair): matched" in out, out
    assert "winner: test-fair (fair), highest priority (3)" in out, out
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod("db", namespace="shop",
                                                          labels={"app": "nginx", "tier": "db"})))
    out = run(command, cwd=tmp_path).stdout
    assert "Selector test-fair (priority 3, fair): objectLabels: pod needs tier NotIn (db), has tier=db" in out, out
    assert "winner: none" in out and "no change" in out, out


def test_patch_output_is_what_kubectl_patch_takes(workdir):
    """``-o patch`` prints a JSONPatch as ``kubectl patch --type=json`` takes it."""
    documented("kubectl patch --type=json", "docs/writing-a-plugin.md")
    mutate = documented("admission-host mutate pod.yaml --objects deploy/examples/virtual-node-only.yaml "
                        "namespaces.yaml -o object")
    patch = run(mutate.replace("-o object", "-o patch"), cwd=workdir).stdout
    patched = run('kubectl patch -f pod.yaml --local --type=json -p "$PATCH" -o json', cwd=workdir,
                  env={"PATCH": patch, **NO_CLUSTER}, path=kubectl_first()).stdout
    assert json.loads(patched) == json.loads(run(mutate, cwd=workdir).stdout)


# -- serving with no cluster ------------------------------------------------------------------------------
class Served:
    """A documented ``serve`` command run in the background (``exec``: the PID is the host's)."""

    def __init__(self, command: str, cwd: Path, replace: dict, scheme: str, port: int, context=None):
        for old, new in replace.items():
            assert old in command, (old, command)
            command = command.replace(old, new)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(NO_CLUSTER)
        self.log = cwd / "serve.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=str(cwd), env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url, self.context = f"{scheme}://127.0.0.1:{port}", context

    def request(self, path: str, body: dict = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=self.context) as resp:
            return resp.status, resp.read()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.request("/readyz")[0] == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def test_serve_local_over_http(workdir):
    command = documented("admission-host serve --local --objects deploy/examples/*.yaml --insecure-http --port 8080",
                         "README.md")
    send = documented("admission-host review pod.yaml | curl -s -H 'Content-Type: application/json' --data-binary @- "
                      "http://127.0.0.1:8080/mutate", "README.md")
    port = free_port()
    host = Served(command, workdir, {"--port 8080": f"--port {port}"}, "http", port)
    try:
        host.wait_ready()
        status, body = host.request("/mutate", review(pod("web", namespace="shop", labels={"app": "nginx"})))
        ops = {op["path"]: op["value"] for op in decoded_patch(json.loads(body))}
        assert ops["/spec/tolerations"] == [TOLERATION]  # test-fair (fair) won: the toleration alone
        # The same pod, from its file, as the API server would send it.
        answer = json.loads(run(send, cwd=workdir, replace={":8080": f":{port}"}).stdout)
        assert decoded_patch(answer) == decoded_patch(json.loads(body)), answer
        names = {p["name"] for p in json.loads(host.request("/plugins")[1])["plugins"]}
        assert "eci_profile" in names
    finally:
        assert host.stop() == 0, host.log.read_text()
    log = host.log.read_text()
    assert "caches from 5 file(s), controllers off" in log, log
    # The examples hold Selectors alone: the plugin's other caches are empty, and the log says so.
    assert "plugin eci_profile watches Node (v1) but the --objects files hold none; its cache eci-nodes is empty" in log


def test_curl_plugins_over_https(workdir, ca):
    """operations.md's check of a host's plugins (there through a port-forward) on a host served here."""
    command = documented("curl -sk https://127.0.0.1:8443/plugins", "docs/operations.md")
    tls = CertFiles(ca, workdir)
    port = free_port()
    host = Served(f"admission-host serve --local --objects deploy/examples/fair.yaml --bind-address 127.0.0.1 "
                  f"--port {port} --tls-cert-file {tls.cert_path} --tls-private-key-file {tls.key_path} "
                  "--shutdown-grace-seconds 0",
                  workdir, {}, "https", port, ca.client_context())
    try:
        host.wait_ready()
        listed = json.loads(run(command, cwd=workdir, replace={":8443": f":{port}"}).stdout)
        assert {"eci_profile", "pod_deletion_cost"} <= {p["name"] for p in listed["plugins"]}
        assert {"eci-profile-pod", "eci-profile-binding"} <= {m["name"] for m in listed["mutators"]}
    finally:
        assert host.stop() == 0, host.log.read_text()


# -- the repository's own commands ---------------------------------------------------------------------------
def test_webhook_config_prints_the_configuration_the_plugins_need(tmp_path):
    """For deploy/'s config file, what deploy/ installs; for every installed plugin (no config), what
    they declare: pod_deletion_cost skips nothing, so no pod is kept away."""
    from framework.host import Host
    from framework.webhook import match_conditions

    shutil.copy(ROOT / "deploy" / "base" / "config.yaml", tmp_path / "config.yaml")
    for command in ("admission-host webhook-config --config config.yaml", "admission-host webhook-config"):
        documented(command, "docs/operations.md")
    printed = yaml.safe_load(run("admission-host webhook-config --config config.yaml", cwd=tmp_path).stdout)
    assert printed == yaml.safe_load((ROOT / "deploy" / "base" / "webhook.yaml").read_text())
    (hook,) = yaml.safe_load(run("admission-host webhook-config", cwd=tmp_path, env=NO_CLUSTER).stdout)["webhooks"]
    assert hook.get("matchConditions", []) == match_conditions(Host().pipeline.mutators) == []
    assert {"pods", "pods/binding"} <= set(hook["rules"][0]["resources"])


def test_render_deploy_rewrites_the_all_in_one_file(tmp_path):
    """Run where it writes (a copy): after a change under deploy/base, the file is rendered anew."""
    command = documented("hack/render-deploy.sh", "docs/operations.md")
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("helm"))
    (tmp_path / "hack").mkdir()
    shutil.copy2(ROOT / "hack" / "render-deploy.sh", tmp_path / "hack")
    config = tmp_path / "deploy" / "base" / "config.yaml"
    config.write_text(config.read_text().replace("eci_profile", "eci_profile  # changed", 1))
    assert run(command + " --check", cwd=tmp_path, check=False).returncode == 1  # out of date now
    assert "wrote deploy/admission-host.yaml" in run(command, cwd=tmp_path).stdout
    run(command + " --check", cwd=tmp_path)
    rendered = (tmp_path / "deploy" / "admission-host.yaml").read_text()
    assert rendered.startswith("# Generated by hack/render-deploy.sh") and "# changed" in rendered
    assert rendered.endswith(run("kubectl kustomize deploy/", cwd=tmp_path, path=kubectl_first()).stdout)


def _source_copy(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", "*.egg-info", "build", "dist", "__pycache__",
                                                              ".pytest_cache", "out", "tests"))
    return dest


def _venv(path: Path) -> Path:
    """A virtualenv that sees this interpreter's packages (the dependencies), not its own bin/."""
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(path)
    return path / "bin"


def _in_venv(bin_dir: Path, *args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_pip_install_gives_both_commands(tmp_path):
    command = documented("pip install .", "README.md")
    source, bin_dir = _source_copy(tmp_path / "src"), _venv(tmp_path / "venv")
    run(command, cwd=source, path=(str(bin_dir),), timeout=300)
    # Installed, not linked: the venv's own copy of the packages.
    where = _in_venv(bin_dir, "python", "-c", "import framework, plugins; print(framework.__file__)", cwd=tmp_path)
    assert where.startswith(str(tmp_path / "venv")), where
    listed = json.loads(_in_venv(bin_dir, "admission-host", "plugins", cwd=tmp_path))
    assert {"eci_profile", "pod_deletion_cost"} <= {p["name"] for p in listed["plugins"]}
    assert "kubectl eci selectors" in _in_venv(bin_dir, "kubectl-eci", "--help", cwd=tmp_path)


def test_pip_install_editable_with_the_test_extra(tmp_path):
    command = documented("python3 -m pip install -e '.[test]'", "README.md")
    assert documented("pip install -e '.[test]'", "docs/writing-a-plugin.md")
    source, bin_dir = _source_copy(tmp_path / "src"), _venv(tmp_path / "venv")
    run(command, cwd=source, path=(str(bin_dir),), timeout=300)
    where = _in_venv(bin_dir, "python", "-c", "import framework, pytest, hypothesis; print(framework.__file__)",
                     cwd=tmp_path)
    assert where.startswith(str(source)), where  # editable: the source itself
    listed = json.loads(_in_venv(bin_dir, "admission-host", "plugins", cwd=tmp_path))
    assert "eci_profile" in {p["name"] for p in listed["plugins"]}


def test_pytest_selects_every_suite_and_not_e2e_only_leaves_out_e2e():
    """What ``python3 -m pytest`` and its ``-m "not e2e"`` select (running them is the suite itself)."""
    everything = documented("python3 -m pytest", "README.md")
    quick = documented('python3 -m pytest -m "not e2e"', "README.md")

    def collected(command):
        out = run(command + " --collect-only -q -p no:cacheprovider", cwd=ROOT, timeout=300).stdout
        return {line.split("::")[0] for line in out.splitlines() if "::" in line}

    files = collected(everything)
    suites = {f.split("/")[1] if f.startswith("tests/") else f.split("/tests/")[0] for f in files}
    assert {"unit", "eci_profile", "hardening", "integration", "e2e", "plugins/examples/env_injector"} <= suites, suites
    assert files - collected(quick) == {f for f in files if f.startswith("tests/e2e/")}
