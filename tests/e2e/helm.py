"""Helm, for the chart in deploy/helm/admission-host: the binary, a runner, and ``helm template``.

The binary is the one hack/helm/build.sh builds from its pinned module (once per machine, into a
cache outside the repository; the first build takes minutes). Set ``ADMISSION_HOST_HELM_BIN`` to
use a folder of your own instead (build.sh honours it).

    from tests.e2e.helm import CHART, helm, template

    objects = template("--set", "certificates.mode=cert-manager")    # List[dict]
    helm("upgrade", "--install", "admission-host", str(CHART), "-n", "admission-host",
         "--create-namespace", "--kubeconfig", str(kubeconfig), "--wait")
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import List, Optional

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "admission-host"
#: What ``template`` renders by default: the release and namespace of the kustomize install.
RELEASE = NAMESPACE = "admission-host"


@functools.lru_cache(maxsize=None)
def helm_path() -> str:
    """The helm executable, built by hack/helm/build.sh if it is not there yet (a lock makes
    concurrent callers wait for one build)."""
    proc = subprocess.run(["bash", str(REPO / "hack" / "helm" / "build.sh")], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"hack/helm/build.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    folder = proc.stdout.strip().splitlines()[-1]
    path = os.path.join(folder, "helm")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"hack/helm/build.sh printed {folder!r}, which holds no helm executable")
    return path


def helm(*args: str, check: bool = True, input: Optional[str] = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``helm ARGS`` (text output captured). With ``check``, a non-zero exit raises
    AssertionError carrying the command and its stderr."""
    proc = subprocess.run([helm_path(), *args], capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def template(*args: str, release: str = RELEASE, namespace: str = NAMESPACE) -> List[dict]:
    """The objects of ``helm template RELEASE CHART -n NAMESPACE --include-crds ARGS`` (values
    flags such as ``--set``, ``-f``, ``--kube-version``), parsed, empty documents dropped."""
    out = helm("template", release, str(CHART), "-n", namespace, "--include-crds", *args).stdout
    return [o for o in yaml.safe_load_all(out) if o]
