"""Shared helpers for the integration tests: a private CA, serving certificates, and the host
run as a real subprocess answering HTTPS on 127.0.0.1.

The servers enable only plugins that declare no watches, and their kubeconfig points at a port
where nothing listens, so they never need an API server.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e.cluster import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LAUNCHER = HERE / "launcher.py"
DELETION_COST_LABEL = "example.com/deletion-cost"
NO_CLUSTER = {"KUBECONFIG": "/nonexistent/kubeconfig"}  # no API server to be found: local mode
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


# -- certificates ----------------------------------------------------------------------------------

class CA:
    """A throw-away certificate authority that signs serving certificates for 127.0.0.1."""

    def __init__(self, directory: Path):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admission-host test CA")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / "ca.crt"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str = "admission-host") -> Tuple[bytes, bytes, bytes]:
        """A serving certificate for IP 127.0.0.1: ``(cert PEM, key PEM, cert DER)``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=12))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return (cert.public_bytes(serialization.Encoding.PEM), key_pem,
                cert.public_bytes(serialization.Encoding.DER))

    def client_context(self, **versions) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.path))
        for attr, value in versions.items():
            setattr(ctx, attr, value)
        return ctx


class CertFiles:
    """A certificate/key pair on disk, as a Secret volume would hold it."""

    def __init__(self, ca: CA, directory: Path, common_name: str = "admission-host"):
        self.ca = ca
        self.directory = directory
        self.cert_path = directory / "tls.crt"
        self.key_path = directory / "tls.key"
        cert, key, self.der = ca.issue(common_name)
        self.cert_path.write_bytes(cert)
        self.key_path.write_bytes(key)

    def replace_atomically(self, common_name: str) -> bytes:
        """Write a new pair beside the old one and rename both into place; returns the new DER."""
        cert, key, der = self.ca.issue(common_name)
        for path, data in ((self.key_path, key), (self.cert_path, cert)):
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        self.der = der
        return der

    def replace_in_place(self, common_name: str, gap: float) -> bytes:
        """Overwrite the certificate, then the key ``gap`` seconds later (a non-atomic rotation)."""
        cert, key, der = self.ca.issue(common_name)
        self.cert_path.write_bytes(cert)
        time.sleep(gap)
        self.key_path.write_bytes(key)
        self.der = der
        return der


@pytest.fixture(scope="session")
def ca(tmp_path_factory) -> CA:
    return CA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory) -> Path:
    """A kubeconfig whose API server is a 127.0.0.1 port with nothing listening."""
    path = tmp_path_factory.mktemp("kube") / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: https://127.0.0.1:{free_port()}
    insecure-skip-tls-verify: true
users:
- name: nobody
  user:
    token: not-a-real-token
contexts:
- name: nowhere
  context: {{cluster: nowhere, user: nobody}}
current-context: nowhere
""")
    return path


# -- the server process ------------------------------------------------------------------------------

class ServerProcess:
    """``admission-host serve`` (or the test launcher, for test-only plugins) as a subprocess."""

    def __init__(self, args: Sequence[str], *, ca: Optional[CA], launcher: bool = False,
                 extra_plugins: Sequence[str] = (), env: Optional[Dict[str, str]] = None):
        self.port = free_port()
        self.ca = ca
        self.scheme = "https" if ca is not None else "http"
        self.log = tempfile.NamedTemporaryFile(prefix="admission-host-", suffix=".log", delete=False)
        if launcher:
            cmd = [sys.executable, str(LAUNCHER)]
            for module in extra_plugins:
                cmd += ["--extra-plugin", module]
            cmd += ["serve"]
        else:
            cmd = [sys.executable, "-m", "framework.cli", "serve"]
        # No endpoint to wait out here: SIGTERM stops at once unless a test asks for the delay.
        cmd += ["--bind-address", "127.0.0.1", "--port", str(self.port), "--no-leader-elect",
                "--shutdown-delay-seconds", "0", *args]
        self.cmd = cmd
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("KUBERNETES_SERVICE_HOST", None)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(REPO), env=full_env)

    # HTTP(S) -------------------------------------------------------------------------------------
    def context(self, **versions) -> Optional[ssl.SSLContext]:
        return self.ca.client_context(**versions) if self.ca is not None else None

    def connection(self, timeout: float = 10.0, **versions) -> http.client.HTTPConnection:
        if self.ca is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=self.context(**versions))

    def request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None,
                conn: Optional[http.client.HTTPConnection] = None, timeout: float = 10.0):
        """One request: ``(status, headers, body)``. ``conn`` keeps a connection alive across calls."""
        own = conn is None
        conn = conn or self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            if own:
                conn.close()

    def mutate(self, review: dict, conn=None, timeout: float = 10.0) -> dict:
        """POST an AdmissionReview and return the decoded answer (asserting 200)."""
        status, headers, body = self.request("POST", "/mutate", orjson.dumps(review),
                                             {"Content-Type": "application/json"}, conn=conn, timeout=timeout)
        assert status == 200, (status, body[:500])
        assert headers.get("Content-Type", "").startswith("application/json")
        return orjson.loads(body)

    def refuses_connections(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
            return False
        except ConnectionRefusedError:
            return True

    def assert_serving(self) -> None:
        """The server is alive and answers a valid request correctly."""
        assert self.proc.poll() is None, f"server exited with {self.proc.returncode}:\n{self.output()}"
        answer = self.mutate(review(labelled_pod("-5")))
        assert decoded_patch(answer) == [deletion_cost_op("-5")]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} before it was ready:\n{self.output()}")
            try:
                status, _, body = self.request("GET", "/readyz", timeout=2)
                if status == 200:
                    return
                last = f"{status} {body!r}"
            except (OSError, http.client.HTTPException) as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout}s (last: {last}):\n{self.output()}")

    # life ----------------------------------------------------------------------------------------
    def output(self) -> str:
        if self.log.closed:
            return ""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, and return the exit status (idempotent). The log is printed, so pytest
        shows it with a failing test."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            print(f"--- {' '.join(self.cmd)} (exit {self.proc.returncode}) ---\n{self.output()}")
            self.log.close()
            os.unlink(self.log.name)
        return self.proc.returncode


@pytest.fixture
def start_server(ca, kubeconfig):
    """Start servers (``start_server(*args, tls=CertFiles|None, ...)``); each is stopped at the end."""
    started: List[ServerProcess] = []

    def start(*args, tls: Optional[CertFiles] = None, wait: bool = True, launcher: bool = False,
              extra_plugins: Sequence[str] = (), plugins: str = "pod_deletion_cost") -> ServerProcess:
        argv = ["--plugins", plugins, "--kubeconfig", str(kubeconfig), *args]
        if tls is None:
            argv.append("--insecure-http")
        else:
            argv += ["--tls-cert-file", str(tls.cert_path), "--tls-private-key-file", str(tls.key_path)]
        server = ServerProcess(argv, ca=tls.ca if tls else None, launcher=launcher, extra_plugins=extra_plugins)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def cert_files(ca, tmp_path) -> CertFiles:
    return CertFiles(ca, tmp_path, "admission-host-1")


@pytest.fixture(scope="module")
def https_server(ca, kubeconfig, tmp_path_factory):
    """One ``admission-host serve`` over HTTPS shared by a module's tests (body limit 1 MiB)."""
    tls = CertFiles(ca, tmp_path_factory.mktemp("tls"), "admission-host-shared")
    server = ServerProcess(["--plugins", "pod_deletion_cost", "--kubeconfig", str(kubeconfig),
                            "--tls-cert-file", str(tls.cert_path), "--tls-private-key-file", str(tls.key_path),
                            "--max-body-bytes", str(1024 * 1024)], ca=ca)
    try:
        server.wait_ready()
        yield server
    finally:
        returncode = server.stop()
        assert returncode == 0, f"server exited with {returncode}"


# -- AdmissionReviews --------------------------------------------------------------------------------

def labelled_pod(cost: Optional[str] = None, name: str = "web-0", labels: Optional[dict] = None,
                 containers: int = 1) -> dict:
    labels = dict(labels or {"app": "web"})
    if cost is not None:
        labels[DELETION_COST_LABEL] = cost
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": f"c{i}", "image": "registry.example.com/web:1.2.3",
                                 "env": [{"name": "MODE", "value": "production"}],
                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
                                for i in range(containers)]},
    }


def review(obj: dict, api_version: str = "admission.k8s.io/v1", uid: Optional[str] = None) -> dict:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": api_version, "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": meta.get("name", ""), "namespace": meta.get("namespace", "default"),
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj, "oldObject": None, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def decoded_patch(answer: dict) -> list:
    response = answer["response"]
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    return orjson.loads(base64.b64decode(response["patch"]))


def deletion_cost_op(cost: str) -> dict:
    return {"op": "add", "path": "/metadata/annotations",
            "value": {DELETION_COST_ANNOTATION: cost}}


def run_threads(target, count: int) -> List[BaseException]:
    """Run ``target(i)`` in ``count`` threads; return the exceptions they raised."""
    errors: List[BaseException] = []
    lock = threading.Lock()

    def wrapper(i):
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=wrapper, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors
