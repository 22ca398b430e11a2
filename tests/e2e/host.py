"""Run admission-host against the throwaway control plane, as it runs in a cluster.

Shared by the end-to-end tests and the demo (``hack/demo.py``): install deploy/'s CRD and RBAC,
issue a token for the host's own ServiceAccount, start ``admission-host serve`` with it, and
register the webhook with deploy/'s settings pointed at the host on loopback.
"""

from __future__ import annotations

import copy
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import List, Optional

import yaml

from framework import ApiError, KubeClient
from tests.e2e.cluster import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"  # deploy/ is the base (deploy/base) plus the CRDs (deploy/crds)
NAMESPACE = "admission-host"
SERVICE_ACCOUNT = "admission-host"


def kubectl(cp, *args: str, check: bool = True, input: Optional[str] = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=str(cp.admin_kubeconfig))
    proc = subprocess.run([cp.kubectl, *args], env=env, capture_output=True, text=True, input=input, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except ApiError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def install_crds(cp, kube: KubeClient) -> None:
    kubectl(cp, "apply", "-k", str(DEPLOY / "crds"))
    wait_for(lambda: any(c.get("type") == "Established" and c.get("status") == "True" for c in
                         (kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/selectors.eci.aliyun.com")
                          .get("status") or {}).get("conditions") or ()), what="CRD established")
    wait_for(lambda: kube.get("/apis/eci.aliyun.com/v1/selectors") is not None, what="selectors served")


def service_account_kubeconfig(cp, kube: KubeClient, path: Path) -> Path:
    """Apply deploy/'s namespace and RBAC; write a kubeconfig with a token of the host's ServiceAccount."""
    kubectl(cp, "apply", "-f", str(BASE / "namespace.yaml"), "-f", str(BASE / "rbac.yaml"))
    token = kube.post(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token",
                      {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": 86400}})["status"]["token"]
    return cp.write_kubeconfig(path, token=token, user="system:serviceaccount:admission-host:admission-host")


def webhook_configuration(url: str, ca_pem: bytes, name: str = "admission-host") -> dict:
    """deploy/webhook.yaml with its clientConfig pointed at ``url``."""
    import base64

    config = copy.deepcopy(yaml.safe_load((BASE / "webhook.yaml").read_text()))
    config["metadata"]["name"] = name
    for hook in config["webhooks"]:
        hook["clientConfig"] = {"url": url, "caBundle": base64.b64encode(ca_pem).decode()}
    return config


def register_webhook(kube: KubeClient, url: str, ca_pem: bytes) -> dict:
    body = webhook_configuration(url, ca_pem)
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    try:
        kube.delete(f"{path}/{body['metadata']['name']}")
    except ApiError as exc:
        if exc.status != 404:
            raise
    return kube.post(path, body)


HOST_CONFIG = """\
enabledPlugins: [eci_profile]
leaderElection: {namespace: admission-host, name: admission-host}
plugins:
  eci_profile:
    virtualNodeLabels: {k8s.aliyun.com/vnode: "true"}
    virtualNodeTolerations:
      - {key: k8s.aliyun.com/vnode, operator: Equal, value: "true", effect: NoSchedule}
    labelSweepInterval: 2s
"""


class HostProcess:
    """``admission-host serve`` as a subprocess on a fixed port (so restarts keep the webhook URL)."""

    def __init__(self, workdir: Path, kubeconfig: Path, cert: Path, key: Path, ca_path: Path,
                 port: Optional[int] = None, config_text: str = HOST_CONFIG, extra_args: List[str] = ()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = self.workdir / "config.yaml"
        self.config.write_text(config_text)
        self.log_path = self.workdir / "admission-host.log"
        self.args = [sys.executable, "-m", "framework.cli", "serve", "--kubeconfig", str(kubeconfig),
                     "--config", str(self.config), "--bind-address", "127.0.0.1", "--port", str(self.port),
                     "--tls-cert-file", str(cert), "--tls-private-key-file", str(key),
                     # No Service in front of it here: nothing to wait out on SIGTERM.
                     "--shutdown-grace-seconds", "5", "--shutdown-delay-seconds", "0", *extra_args]
        self.ssl = ssl.create_default_context(cafile=str(ca_path))
        self.env: Optional[dict] = None  # None: this process's environment
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "HostProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO), env=self.env)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def get(self, path: str) -> tuple:
        try:
            with urllib.request.urlopen(self.url + path, context=self.ssl, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"admission-host exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                return False
        try:
            wait_for(ready, timeout, 0.1, "admission-host /readyz")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class RoundRobinProxy:
    """A TCP proxy on loopback that hands each new connection to the next backend in turn, as a
    Service spreads the API server's webhook connections over the host's replicas. TLS passes
    through untouched."""

    def __init__(self, backends: List[int]):
        self.backends = list(backends)
        self.port = free_port()
        self._turn = 0
        self._loop = None
        self._thread = None

    def start(self) -> "RoundRobinProxy":
        import asyncio
        import threading

        ready = threading.Event()

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def handle(reader, writer):
            port = self.backends[self._turn % len(self.backends)]
            self._turn += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        async def main():
            self._closing = asyncio.Event()
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            ready.set()
            await self._closing.wait()
            server.close()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        def run():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(main())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="round-robin-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    @property
    def connections(self) -> int:
        return self._turn

    def stop(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._closing.set)
            self._thread.join(10)
