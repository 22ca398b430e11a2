"""The project's image, built from the repository's Dockerfile and run the way a kubelet runs it.

``images()`` builds with ``hack/image/build.sh`` (buildah; once per test session). ``ImagePod``
runs one replica of an installed Deployment from the image with podman, taking everything from the
objects the API server holds: the container's args and environment (``$(VAR)``, fieldRefs,
resourceFieldRefs), its ConfigMap and Secret volumes, emptyDirs, its ServiceAccount's token at the
in-cluster path, the user and group of its securityContext, a read-only root filesystem, dropped
capabilities. What stands in for the pod's network: the machine's (``--network host``), so the
container port is moved to a free one on 127.0.0.1; the test routes the Service there
(``ServiceNetwork``).
"""

from __future__ import annotations

import base64
import functools
import math
import os
import re
import resource
import ssl
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from framework import KubeClient
from tests.e2e.host import REPO, HostProcess, free_port

BUILD = REPO / "hack" / "image" / "build.sh"
# overlay named on every call (podman keeps the driver of its first run); runc, since crun refuses
# hybrid cgroup hierarchies.
PODMAN = ("podman", "--storage-driver", "overlay", "--runtime", "runc")
# podman's default rlimits (1048576 files, 4194304 processes) are above what this machine lets a
# container set; this process's own limit of files is.
_FILES = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
ULIMITS = ("--ulimit", f"nofile={_FILES}:{_FILES}", "--ulimit", "nproc=4096:4096")
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@functools.lru_cache(maxsize=None)
def images() -> Tuple[str, str]:
    """(the project's image, the derived image with a third-party plugin), built in this run."""
    proc = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD} failed:\n{proc.stderr[-4000:]}")
    image, derived = proc.stdout.split()
    return image, derived


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def container_env(deployment: dict, container: dict) -> Dict[str, str]:
    """The container's environment as the kubelet sets it: values, the namespace fieldRef, and
    resourceFieldRefs (limits.cpu with divisor 1 is the limit rounded up to whole CPUs)."""
    env = {}
    for e in container.get("env") or ():
        source = e.get("valueFrom") or {}
        if source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[e["name"]] = deployment["metadata"]["namespace"]
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            assert ref.get("containerName") in (None, container["name"]) and ref["resource"] == "limits.cpu", ref
            assert str(ref.get("divisor", "1")) == "1", ref
            limit = str(container["resources"]["limits"]["cpu"])
            cpus = int(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
            env[e["name"]] = str(math.ceil(cpus))
        elif "value" in e:
            env[e["name"]] = e["value"]
    return env


def expand(args: List[str], env: dict) -> List[str]:
    """``$(NAME)`` in args replaced as the kubelet does (an unknown name is left as written)."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


class ImagePod(HostProcess):
    """One replica of ``deployment`` (as the API server holds it) run from ``image`` by podman.

    ``start``, ``wait_ready``, ``get`` and ``log_tail`` are HostProcess's; ``stop`` is the kubelet's."""

    def __init__(self, admin: KubeClient, api_port: int, ca_pem: bytes, deployment: dict, image: str,
                 workdir: Path):
        self.admin, self.image = admin, image
        self.workdir = Path(tempfile.mkdtemp(prefix="pod-", dir=workdir))
        self.namespace = deployment["metadata"]["namespace"]
        spec = deployment["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        self.container = c
        self.name = f"{deployment['metadata']['name']}-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        env = container_env(deployment, c)
        # In-cluster credentials, as the kubelet gives every pod with a ServiceAccount.
        env.update(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=str(api_port))
        self.env = env
        ports = {p["containerPort"] for p in c.get("ports") or ()}
        args = []
        for arg in expand(c.get("args") or [], env):
            flag, _, value = arg.partition("=")
            if flag == "--port" and int(value) in ports:
                arg = f"--port={self.port}"
            args.append(arg)
        self.args = args + ["--bind-address=127.0.0.1"]
        security = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
        self.user = f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"
        self.options = ["--name", self.name, "--network", "host", *ULIMITS, "--user", self.user]
        if security.get("readOnlyRootFilesystem"):
            # Only the declared volumes are writable: no tmpfs of podman's own on /tmp, /run.
            self.options += ["--read-only", "--read-only-tmpfs=false"]
        for cap in (security.get("capabilities") or {}).get("drop") or ():
            self.options += ["--cap-drop", cap]
        if security.get("allowPrivilegeEscalation") is False:
            self.options += ["--security-opt", "no-new-privileges"]
        for name, value in env.items():
            self.options += ["--env", f"{name}={value}"]
        self.options += self._volumes(spec, c)
        self.options += self._service_account(spec, ca_pem)
        self.args = [*PODMAN, "run", "--rm", *self.options, image, *self.args]
        self.env = None
        self.log_path = self.workdir / "container.log"
        self.proc: Optional[subprocess.Popen] = None
        self.ssl = ssl._create_unverified_context()  # the tests check the served certificate themselves

    def _volumes(self, spec: dict, c: dict) -> List[str]:
        volumes = {v["name"]: v for v in spec.get("volumes") or ()}
        options = []
        for mount in c.get("volumeMounts") or ():
            source = volumes[mount["name"]]
            target = mount["mountPath"]
            if "emptyDir" in source:
                # The kubelet makes emptyDirs writable by every user of the pod.
                options += ["--mount", f"type=tmpfs,destination={target},tmpfs-mode=1777"]
                continue
            local = self.workdir / "volumes" / mount["name"]
            local.mkdir(parents=True)
            if "configMap" in source:
                data = self.admin.get(f"/api/v1/namespaces/{self.namespace}/configmaps/"
                                      f"{source['configMap']['name']}").get("data") or {}
                for key, value in data.items():
                    (local / key).write_text(value)
            elif "secret" in source:
                data = self.admin.get(f"/api/v1/namespaces/{self.namespace}/secrets/"
                                      f"{source['secret']['secretName']}").get("data") or {}
                for key, value in data.items():
                    (local / key).write_bytes(base64.b64decode(value))
            else:
                raise AssertionError(f"volume {mount['name']}: {sorted(source)} not supported here")
            os.chmod(local, 0o755)
            for f in local.iterdir():
                os.chmod(f, 0o644)  # defaultMode 0644, as the kubelet writes them
            options += ["--volume", f"{local}:{target}:ro"]
        return options

    def _service_account(self, spec: dict, ca_pem: bytes) -> List[str]:
        account = spec.get("serviceAccountName") or "default"
        token = self.admin.post(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": 3600}})["status"]["token"]
        local = self.workdir / "serviceaccount"
        local.mkdir()
        (local / "token").write_text(token)
        (local / "ca.crt").write_bytes(ca_pem)
        (local / "namespace").write_text(self.namespace)
        for f in local.iterdir():
            os.chmod(f, 0o644)
        return ["--volume", f"{local}:{SERVICE_ACCOUNT_DIR}:ro"]

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *command, check=False)

    def stop(self, timeout: int = 20) -> Optional[int]:
        """SIGTERM (the host drains), then SIGKILL after ``timeout`` seconds, as the kubelet does."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            podman("stop", "--time", str(timeout), self.name, check=False, timeout=timeout + 30)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                podman("rm", "--force", self.name, check=False)
                self.proc.wait(30)
        return self.proc.returncode
