"""Installing the separately packaged plugin is all it takes for the host to use it."""

import importlib.metadata
import json
import os
import re
import shutil
import site as sitemodule
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[1]
DISTRIBUTION = "admission-host-env-injector"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The plugin installed by pip into a directory of its own (built from a copy of its source,
    so that the build leaves nothing in the source tree)."""
    source = tmp_path_factory.mktemp("source") / "env_injector"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                           str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


@pytest.fixture(scope="module")
def environment_without_it(tmp_path_factory):
    """This environment's site-packages less the plugin's distribution, should it be installed
    there too: every entry linked into a directory of its own, but the files the distribution
    installed (its package, its .dist-info, the .pth of an editable install)."""
    merged = tmp_path_factory.mktemp("site-without")
    dirs = ([sitemodule.getusersitepackages()] if sitemodule.ENABLE_USER_SITE else []) + sitemodule.getsitepackages()
    for directory in map(Path, dirs):
        if not directory.is_dir():
            continue
        theirs = {Path(f).parts[0] for dist in importlib.metadata.distributions(path=[str(directory)])
                  if re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower() == DISTRIBUTION for f in dist.files or ()}
        for entry in directory.iterdir():
            if entry.name not in theirs and not (merged / entry.name).exists():
                (merged / entry.name).symlink_to(entry)
    return merged


# Without site (-S), the merged directory is the only site-packages (its .pth files processed).
ONLY_SITE = ("import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); "
             "runpy.run_module('framework.cli', run_name='__main__', alter_sys=True)")


def host_cli(*args, site=None, cwd=None, only_site=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    command = ["-m", "framework.cli"] if only_site is None else ["-S", "-c", ONLY_SITE, str(only_site)]
    proc = subprocess.run([sys.executable, *command, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_installed_plugin_is_listed(site):
    listed = host_cli("plugins", site=site)
    entry = next(p for p in listed["plugins"] if p["name"] == "env_injector")
    assert entry["distribution"] == "admission-host-env-injector" and entry["version"] == "0.1.0"
    assert "env-injector" in listed["mutators"]
    assert "env-injector-namespaces" in listed["watches"]


def test_without_the_install_it_is_not(environment_without_it, tmp_path):
    listed = host_cli("plugins", cwd=tmp_path, only_site=environment_without_it)
    names = [p["name"] for p in listed["plugins"]]
    assert "eci_profile" in names and "env_injector" not in names


def test_the_installed_plugin_mutates(site, tmp_path):
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"containers": [{"name": "app", "image": "nginx"}]}}))
    (tmp_path / "namespaces.yaml").write_text(yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": "shop", "labels": {"env-injector.example.com/enabled": "true"}}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}]))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"enabledPlugins": ["env_injector"], "plugins": {"env_injector": {"env": {"CLUSTER_NAME": "prod-eu-1"}}}}))
    pod = host_cli("mutate", str(tmp_path / "pod.yaml"), "--objects", str(tmp_path / "namespaces.yaml"),
                   "--config", str(tmp_path / "config.yaml"), "-o", "object", site=site)
    assert pod["spec"]["containers"][0]["env"] == [{"name": "CLUSTER_NAME", "value": "prod-eu-1"}]
