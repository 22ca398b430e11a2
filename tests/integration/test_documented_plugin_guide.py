"""docs/writing-a-plugin.md, followed as a plugin author would: the host's wheel built from this
repository and installed into a new virtualenv, the guide's files installed there with pip, and
every command the guide gives run there, with no package index reachable."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

import pytest
import yaml

from framework.testing import pod, review
from tests.documented import ROOT, doc_blocks, documented, run
from tests.e2e.cluster import free_port
from tests.integration.conftest import decoded_patch

GUIDE = "docs/writing-a-plugin.md"
MODULE, SETUP, TESTS = doc_blocks(GUIDE, "python")[:3]
TRANSCRIPTS = "".join(b for b in doc_blocks(GUIDE, "sh") if b.startswith("$ "))
DOCKERFILE = doc_blocks(GUIDE, "dockerfile")[0]
# Where the guide has a checkout of this repository.
CHECKOUT = "/path/to/admission-host"
BUILD_CHECK = "admission-host plugins --check --plugins owner_label"
HOSTS_OWN = re.compile(r"(?i)^(__editable__[._]_?)?admission[-_]host[-_.]")


def transcript_output(command: str) -> str:
    """What the guide shows ``$ command`` printing (up to the next prompt)."""
    return re.search(rf"^\$ {re.escape(command)}\n(.*?)(?=^\$ |\Z)", TRANSCRIPTS, re.S | re.M).group(1)


def environment(bin_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env["KUBECONFIG"] = "/nonexistent/kubeconfig"
    return env


@pytest.fixture(scope="module")
def no_index(tmp_path_factory) -> dict:
    """pip's environment for the guide's commands: no index at all, so that nothing called
    admission-host can come from one. pip still builds each package in an isolated environment with
    setuptools (and wheel, for a setup.py alone), public build tools it would take from an index:
    fetched here, beforehand, into the one folder pip may look in."""
    tools = tmp_path_factory.mktemp("build-tools")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--quiet",
                           "--dest", str(tools), "setuptools", "wheel"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tools), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory) -> Path:
    """This interpreter's site-packages less the host's own distribution (its packages and metadata,
    or the finder of an editable install): the host's dependencies and pytest, where an index would
    have them, and no host. Every entry is linked into a folder of its own."""
    merged = tmp_path_factory.mktemp("dependencies")
    dirs = ([site.getusersitepackages()] if site.ENABLE_USER_SITE else []) + site.getsitepackages()
    for directory in map(Path, dirs):
        if not directory.is_dir():
            continue
        theirs = {Path(f).parts[0] for d in importlib.metadata.distributions(path=[str(directory)])
                  if re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() == "admission-host" for f in d.files or ()}
        for entry in directory.iterdir():
            if HOSTS_OWN.match(entry.name):  # its metadata and an editable install's finder, recorded or not
                continue
            if entry.name not in theirs and not (merged / entry.name).exists():
                (merged / entry.name).symlink_to(entry)
    return merged


def new_venv(path: Path, dependencies: Path) -> Path:
    """A new virtualenv, without the host, whose interpreter also sees ``dependencies``."""
    venv.EnvBuilder(with_pip=True).create(path)
    purelib = subprocess.run([str(path / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(f"{dependencies}\n")
    return path / "bin"


def in_venv(bin_dir: Path, code: str, cwd: Path) -> str:
    return run(f"python -c {shlex.quote(code)}", cwd=cwd, path=(str(bin_dir),)).stdout.strip()


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
def dev_venv(tmp_path_factory, dependencies) -> Path:
    """The virtualenv where the plugin is developed: new, with no host in it yet."""
    return new_venv(tmp_path_factory.mktemp("venv"), dependencies)


@pytest.fixture(scope="module")
def host_wheel(tmp_path_factory, dev_venv, no_index) -> Path:
    """The host's wheel, built as the guide says in a checkout of this repository (a copy: the build
    leaves build/ and egg-info behind)."""
    checkout = tmp_path_factory.mktemp("checkout") / "admission-host"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
        ".git", "*.egg-info", "build", "dist", "__pycache__", ".pytest_cache", "out", "tests"))
    command = documented("pip wheel --no-deps -w dist .", GUIDE)
    run(command, cwd=checkout, path=(str(dev_venv),), env=no_index, timeout=300)
    wheel = checkout / "dist" / "admission_host-0.1.0-py3-none-any.whl"
    assert wheel.is_file(), sorted(p.name for p in (checkout / "dist").iterdir())
    return wheel


@pytest.fixture(scope="module")
def bin_dir(plugin, dev_venv, host_wheel, no_index) -> Path:
    """The host from its wheel, then the plugin, installed as the guide installs them, with no index."""
    checkout = host_wheel.parents[1]
    install_host = documented(f"pip install {CHECKOUT}/dist/{host_wheel.name} pytest", GUIDE)
    run(install_host, cwd=plugin, replace={CHECKOUT: str(checkout)}, path=(str(dev_venv),), env=no_index,
        timeout=300)
    run(documented("pip install -e .", GUIDE), cwd=plugin, path=(str(dev_venv),), env=no_index, timeout=300)
    return dev_venv


def test_the_host_and_the_plugin_install_with_no_index_the_host_from_its_wheel(bin_dir, plugin, tmp_path):
    venv_root = str(bin_dir.parent)
    # The host's own copy, installed from the wheel: not this checkout, not an editable install.
    assert in_venv(bin_dir, "import framework; print(framework.__file__)", tmp_path).startswith(venv_root)
    assert in_venv(bin_dir, "import importlib.metadata as m; print(m.version('admission-host'))", tmp_path) == "0.1.0"
    requires = in_venv(bin_dir, "import importlib.metadata as m; print(m.requires('admission-host-owner-label'))",
                       tmp_path)
    assert requires == "['admission-host>=0.1']", "declared as the guide's setup.py declares it"
    assert (bin_dir / "admission-host").is_file(), "the wheel's command"
    plugin_file = in_venv(bin_dir, "import admission_host_owner_label as m; print(m.__file__)", tmp_path)
    assert plugin_file.startswith(str(plugin)), "the editable install: the plugin's own directory"


def test_without_the_host_first_the_plugin_does_not_install(plugin, dependencies, no_index, tmp_path):
    """Installed into a virtualenv without the host, the plugin's requirement sends pip looking for
    admission-host on an index: here there is none, so it fails; with one, it would install whatever
    that index holds under the name (docs/threat-model.md). Hence the host first, from its wheel."""
    fresh = new_venv(tmp_path / "venv", dependencies)
    source = tmp_path / "src"
    shutil.copytree(plugin, source)
    proc = run(documented("pip install -e .", GUIDE), cwd=source, path=(str(fresh),), env=no_index, timeout=300,
               check=False)
    assert proc.returncode != 0
    assert "No matching distribution found for admission-host>=0.1" in proc.stderr, proc.stderr


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
    send = documented("admission-host review pod.yaml | curl -s -H 'Content-Type: application/json' --data-binary @- "
                      "http://127.0.0.1:8080/mutate", GUIDE)
    (tmp_path / "namespaces.yaml").write_text(transcript_output("cat namespaces.yaml"))
    (tmp_path / "pod.yaml").write_text(transcript_output("cat pod.yaml"))
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
        # The guide's pod.yaml, as the API server would send it, through curl.
        piped = json.loads(run(send, cwd=tmp_path, replace={":8080": f":{port}"}, env=environment(bin_dir)).stdout)
        assert decoded_patch(piped) == decoded_patch(answer), piped
        listed = json.loads(urllib.request.urlopen(url + "/plugins", timeout=10).read())
        assert [p["name"] for p in listed["plugins"]] == ["owner_label"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


@pytest.fixture
def image(tmp_path, dependencies, host_wheel, no_index) -> Path:
    """A stand-in for the host's image: a virtualenv with the host installed from its wheel."""
    bin_dir = new_venv(tmp_path / "image", dependencies)
    run(f"pip install {host_wheel}", cwd=tmp_path, path=(str(bin_dir),), env=no_index, timeout=300)
    return bin_dir


def built_wheel(source: Path, dev_venv: Path, no_index: dict) -> Path:
    """``pip wheel`` as the guide gives it, in the plugin's directory: the file its Dockerfile copies."""
    run(documented("pip wheel --no-deps -w dist .", GUIDE), cwd=source, path=(str(dev_venv),), env=no_index,
        timeout=300)
    copied = re.search(r"^COPY (dist/\S+\.whl) /tmp/$", DOCKERFILE, re.M).group(1)
    wheel = source / copied
    assert wheel.is_file(), sorted(p.name for p in (source / "dist").iterdir())
    return wheel


def install_as_the_dockerfile_does(wheel: Path, image: Path, cwd: Path, no_index: dict) -> dict:
    """The Dockerfile's RUN line, the wheel where it copies it to; then what its check printed."""
    install = documented(f"pip install --no-cache-dir --no-deps /tmp/{wheel.name}", GUIDE)
    check = documented(BUILD_CHECK, GUIDE, "docs/operations.md")
    assert re.search(rf"^RUN {re.escape(install)} \\\n && {re.escape(check)}$", DOCKERFILE, re.M), DOCKERFILE
    run(f"{install} && {check}", cwd=cwd, replace={f"/tmp/{wheel.name}": str(wheel)}, path=(str(image),),
        env=no_index, timeout=300)
    return json.loads(run(check, cwd=cwd, path=(str(image),)).stdout)  # pip's lines before it, in the RUN


def test_the_wheel_installs_as_the_dockerfile_does(plugin, dev_venv, image, no_index, tmp_path):
    """``pip wheel`` makes the file the guide's Dockerfile copies; its RUN line, in a stand-in for
    the image, installs it and checks it."""
    source = tmp_path / "src"
    shutil.copytree(plugin, source)  # a copy: the build leaves build/ behind
    wheel = built_wheel(source, dev_venv, no_index)
    listed = install_as_the_dockerfile_does(wheel, image, tmp_path, no_index)
    assert [(p["name"], p["version"]) for p in listed["plugins"]] == [("owner_label", "0.1.0")]
    # Installed from the wheel into the stand-in image, not found through the development install.
    out = in_venv(image, "import admission_host_owner_label as m; print(m.__file__)", tmp_path)
    assert out.startswith(str(image.parent)), out
    listing = documented("admission-host plugins --plugins owner_label", GUIDE)
    assert yaml.safe_load(run(listing, cwd=tmp_path, path=(str(image),)).stdout)["mutators"] == ["owner-label"]


def test_the_build_check_passes_for_a_plugin_with_a_required_option(plugin, dev_venv, image, no_index, tmp_path):
    """The image has no options: a plugin whose option is required passes the Dockerfile's check,
    where ``plugins`` without ``--check``, which starts the plugin with the options it is given, exits 2."""
    source = tmp_path / "src"
    shutil.copytree(plugin, source)
    module = source / "admission_host_owner_label.py"
    required, count = re.subn(r'default="example\.com/owner",\s*', "", MODULE)
    assert count == 1, "the guide's option has a default to take away"
    module.write_text(required)
    wheel = built_wheel(source, dev_venv, no_index)
    listed = install_as_the_dockerfile_does(wheel, image, tmp_path, no_index)
    (entry,) = listed["plugins"]
    assert entry["options"] == [{"name": "label", "type": "string", "required": True,
                                 "help": "the namespace label copied onto its pods"}]
    started = run("admission-host plugins --plugins owner_label", cwd=tmp_path, path=(str(image),), check=False)
    assert started.returncode == 2
    assert "admission-host: error: plugin 'owner_label': missing required option(s) label" in started.stderr
