"""docs/writing-a-plugin.md, followed as a plugin author would: the guide's files in a directory,
installed with pip into a virtualenv, and every command the guide gives run there."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

import pytest
import yaml

from framework.testing import pod, review
from tests.documented import doc_blocks, documented, run
from tests.e2e.cluster import free_port
from tests.integration.conftest import decoded_patch

GUIDE = "docs/writing-a-plugin.md"
MODULE, SETUP, TESTS = doc_blocks(GUIDE, "python")[:3]
TRANSCRIPTS = "".join(b for b in doc_blocks(GUIDE, "sh") if b.startswith("$ "))
DOCKERFILE = doc_blocks(GUIDE, "dockerfile")[0]


def transcript_output(command: str) -> str:
    """What the guide shows ``$ command`` printing (up to the next prompt)."""
    return re.search(rf"^\$ {re.escape(command)}\n(.*?)(?=^\$ |\Z)", TRANSCRIPTS, re.S | re.M).group(1)


def environment(bin_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env["KUBECONFIG"] = "/nonexistent/kubeconfig"
    return env


def host_venv(path: Path) -> Path:
    """A virtualenv that sees this interpreter's packages (the host and its dependencies), with the
    ``admission-host`` command pip would have written had it installed the host there: the
    system's own command runs the system's interpreter, which would not see the venv's plugin."""
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(path)
    script = path / "bin" / "admission-host"
    script.write_text(f"#!{path / 'bin' / 'python'}\nimport sys\nfrom framework.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return path / "bin"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    """The guide's three files, laid out as its tree shows."""
    root = tmp_path_factory.mktemp("guide") / "admission-host-owner-label"
    (root / "tests").mkdir(parents=True)
    (root / "setup.py").write_text(SETUP)
    (root / "admission_host_owner_label.py").write_text(MODULE)
    (root / "tests" / "test_owner_label.py").write_text(TESTS)
    return root


@pytest.fixture(scope="module")
def bin_dir(plugin, tmp_path_factory) -> Path:
    """A virtualenv with the host (this interpreter's packages) and the plugin, as the guide installs it."""
    bin_dir = host_venv(tmp_path_factory.mktemp("venv"))
    command = documented("pip install -e .", GUIDE)
    run(command, cwd=plugin, path=(str(bin_dir),), timeout=300)
    return bin_dir


def test_the_guides_tests_pass_installed(plugin, bin_dir):
    command = documented("python -m pytest tests", GUIDE)
    out = run(command, cwd=plugin, path=(str(bin_dir),), timeout=300).stdout
    assert re.search(r"\b6 passed\b", out), out


def test_plugins_prints_what_the_guide_shows(plugin, bin_dir, tmp_path):
    command = documented("admission-host plugins --plugins owner_label", GUIDE)
    out = run(command, cwd=tmp_path, path=(str(bin_dir),), env={"KUBECONFIG": "/nonexistent"}).stdout
    assert json.loads(out) == json.loads(transcript_output(command))


def test_serve_local_with_the_plugin(plugin, bin_dir, tmp_path):
    command = documented("admission-host serve --local --objects namespaces.yaml --plugins owner_label "
                         "--insecure-http --port 8080", GUIDE)
    (tmp_path / "namespaces.yaml").write_text(transcript_output("cat namespaces.yaml"))
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", "exec " + command.replace("--port 8080", f"--port {port}")],
                                cwd=str(tmp_path), env=environment(bin_dir), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if urllib.request.urlopen(url + "/readyz", timeout=2).status == 200:
                    break
            except (OSError, urllib.error.URLError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        sent = review(pod("web", namespace="shop"))
        req = urllib.request.Request(url + "/mutate", data=json.dumps(sent).encode(),
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert decoded_patch(answer) == [{"op": "add", "path": "/metadata/labels",
                                          "value": {"example.com/owner": "team-a"}}]
        listed = json.loads(urllib.request.urlopen(url + "/plugins", timeout=10).read())
        assert [p["name"] for p in listed["plugins"]] == ["owner_label"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def test_the_wheel_installs_as_the_dockerfile_does(plugin, bin_dir, tmp_path):
    """``pip wheel`` makes the file the guide's Dockerfile copies; its RUN line, in a fresh
    virtualenv standing in for the image, installs it and lists the plugin."""
    source = tmp_path / "src"
    run(f"cp -r {plugin} {source}", cwd=tmp_path)  # a copy: the build leaves build/ behind
    run(documented("pip wheel --no-deps -w dist .", GUIDE), cwd=source, path=(str(bin_dir),), timeout=300)
    copied = re.search(r"^COPY (dist/\S+\.whl) /tmp/$", DOCKERFILE, re.M).group(1)
    wheel = source / copied
    assert wheel.is_file(), sorted(p.name for p in (source / "dist").iterdir())

    image = host_venv(tmp_path / "image").parent
    install = documented(f"pip install --no-cache-dir --no-deps /tmp/{wheel.name}", GUIDE)
    listing = documented("admission-host plugins --plugins owner_label", GUIDE)
    run(f"{install} && {listing}", cwd=tmp_path, replace={f"/tmp/{wheel.name}": str(wheel)},
        path=(str(image / "bin"),), timeout=300)
    # Installed from the wheel into the stand-in image, not found through the development install.
    out = run("python -c 'import admission_host_owner_label as m; print(m.__file__)'", cwd=tmp_path,
              path=(str(image / "bin"),)).stdout
    assert out.startswith(str(image)), out
    assert yaml.safe_load(run(listing, cwd=tmp_path, path=(str(image / "bin"),)).stdout)["mutators"] == ["owner-label"]
