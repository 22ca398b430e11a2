"""A throwaway Kubernetes cluster for end-to-end tests, on loopback ports.

Two releases, picked with ``ADMISSION_HOST_KUBE_VERSION`` (default: the current one):

- **1.37** (current): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK,
  built from the published Go modules by ``hack/cluster/build.sh``. KWOK plays the kubelet of
  every node the tests create (heartbeats and leases, pods go Running, deletions finish), so
  Deployments, ReplicaSet scale-in, node lifecycle and evictions behave for real. Karpenter's
  KWOK provider (``start_autoscaler``) adds an autoscaler for the scenarios that need one.
- **1.20** (the oldest supported): etcd (Debian's), kube-apiserver and kube-scheduler built from
  Debian's source by ``hack/cluster-1.20/build.sh``. No controllers and no kubelets: pods
  are bound to Node objects and never run.

Binaries are built once per machine into ``~/.cache/admission-host`` (``ADMISSION_HOST_CACHE``,
or ``ADMISSION_HOST_KUBE_BIN`` for the folder itself). Every ``ControlPlane.start()`` uses a fresh
etcd data directory.

Usage::

    python -m tests.e2e.cluster up     # start, print KUBECONFIG, Ctrl-C to stop
"""

from __future__ import annotations

import atexit
import datetime as _dt
import functools
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e.service_network import ServiceNetwork

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
VERSION_ENV = "ADMISSION_HOST_KUBE_VERSION"
KWOK_STAGES = REPO_ROOT / "hack" / "cluster" / "kwok-stages.yaml"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
CAPACITY_ANNOTATION = "admission-host.e2e/capacity"  # read by KWOK_STAGES' node-initialize

__all__ = [
    "Certs",
    "ControlPlane",
    "ControlPlaneError",
    "RELEASES",
    "Release",
    "create_node",
    "ensure_binaries",
    "kubectl_path",
    "selected_release",
]


class ControlPlaneError(RuntimeError):
    """A control-plane component failed to build, start or become ready."""


# --------------------------------------------------------------------------
# Releases and their binaries
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """A Kubernetes minor the suite runs on, and how its binaries are made."""

    minor: str
    build_script: Path
    binaries: tuple

    @property
    def simulated_nodes(self) -> bool:
        """KWOK and kube-controller-manager run: nodes heartbeat, pods run, controllers act."""
        return "kwok" in self.binaries

    def bin_dir(self, own: bool = False) -> Path:
        """Where the build script puts (or has put) this release's binaries: ``ADMISSION_HOST_KUBE_BIN``
        if set (unless ``own``), else the script's own folder."""
        env = dict(os.environ)
        given = env.pop("ADMISSION_HOST_KUBE_BIN", None)
        if given and not own:
            return Path(given).expanduser()
        out = subprocess.run(["bash", str(self.build_script), "--bin-dir"], capture_output=True, text=True,
                             check=True, timeout=60, env=env)
        return Path(out.stdout.strip().splitlines()[-1])


CURRENT = Release("1.37", REPO_ROOT / "hack" / "cluster" / "build.sh",
                  ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl", "etcd", "kwok",
                   "kwok-karpenter"))
OLDEST = Release("1.20", REPO_ROOT / "hack" / "cluster-1.20" / "build.sh",
                 ("kube-apiserver", "kube-scheduler"))
RELEASES = {r.minor: r for r in (CURRENT, OLDEST)}


def selected_release() -> Release:
    """The release ``ADMISSION_HOST_KUBE_VERSION`` names (``1.37``, ``v1.20.2``, ``current``, ``oldest``)."""
    wanted = os.environ.get(VERSION_ENV, "").strip().lower().lstrip("v") or "current"
    wanted = {"current": CURRENT.minor, "oldest": OLDEST.minor}.get(wanted, wanted)
    minor = ".".join(wanted.split(".")[:2])
    if minor not in RELEASES:
        raise ControlPlaneError("%s=%r: the suite runs on %s" % (
            VERSION_ENV, os.environ.get(VERSION_ENV), ", ".join(sorted(RELEASES))))
    return RELEASES[minor]


def find_etcd(bin_dir: Path) -> Path:
    """``bin_dir/etcd`` (built with the current release), else Debian's etcd on ``$PATH``."""
    for c in (Path(bin_dir) / "etcd", Path(shutil.which("etcd") or "/usr/bin/etcd")):
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise ControlPlaneError("etcd not found in %s nor on PATH" % bin_dir)


def _binaries_ok(release: Release, bin_dir: Path) -> bool:
    if not all(os.access(bin_dir / name, os.X_OK) for name in release.binaries):
        return False
    try:
        out = subprocess.run([str(bin_dir / "kube-apiserver"), "--version"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        find_etcd(bin_dir)
    except (OSError, subprocess.SubprocessError, ControlPlaneError):
        return False
    return out.startswith("Kubernetes v%s." % release.minor)


def ensure_binaries(release: Optional[Release] = None) -> Path:
    """Return the folder holding ``release``'s binaries, building them first if needed.

    The build streams its progress to stderr; it takes minutes the first time on two cores
    (see the build scripts) and nothing afterwards.
    """
    release = release or selected_release()
    bin_dir = release.bin_dir()
    if _binaries_ok(release, bin_dir):
        return bin_dir
    env = dict(os.environ, ADMISSION_HOST_KUBE_BIN=str(bin_dir))
    proc = subprocess.Popen(["bash", str(release.build_script)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        sys.stderr.write(line)
        sys.stderr.flush()
    if proc.wait() != 0:
        raise ControlPlaneError("%s failed (exit %d):\n%s" % (
            release.build_script, proc.returncode, "".join(lines[-40:])))
    if not _binaries_ok(release, bin_dir):
        raise ControlPlaneError("%s succeeded but %s has no working binaries" % (release.build_script, bin_dir))
    return bin_dir


def kubectl_path(release: Optional[Release] = None) -> str:
    """The kubectl the tests run for ``release`` (default: the selected one).

    A release whose build makes one (the current) uses its own, built first if need be. One without
    (1.20) uses the current release's when that is built (CI builds both; the skew is wide, but what
    the suite asks of it, apply, get, wait, api-versions, auth can-i and kustomize, works against a
    1.20 API server), else a kubectl on PATH. With neither it raises, saying how to build one: a
    missing kubectl fails the tests that need it, never skips them.
    """
    return _kubectl_path((release or selected_release()).minor)


@functools.lru_cache(maxsize=None)
def _kubectl_path(minor: str) -> str:
    release = RELEASES[minor]
    if "kubectl" in release.binaries:
        return str(ensure_binaries(release) / "kubectl")
    folders = [release.bin_dir(), CURRENT.bin_dir(own=True)]
    for candidate in [f / "kubectl" for f in folders] + [Path(shutil.which("kubectl") or "/nonexistent")]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ControlPlaneError(
        "no kubectl for the Kubernetes %s tests: its build makes none, and there is none in %s or on PATH. "
        "Build the current release's with `bash %s` (it puts kubectl in %s), or put a kubectl on PATH."
        % (minor, ", ".join(str(f) for f in folders), CURRENT.build_script.relative_to(REPO_ROOT), folders[-1]))


# --------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Certs:
    """A CA plus every certificate the control plane and tests need.

    All files live in ``directory``. TLS keys are ECDSA P-256 (fast to
    generate); the service-account signing key is RSA 2048.
    """

    def __init__(self, directory: Path, days: int = 365):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.days = days

        now = _dt.datetime.now(_dt.timezone.utc)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admission-host-e2e-ca")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key())
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(hours=1))
            .not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_pem: bytes = self._ca_cert.public_bytes(serialization.Encoding.PEM)
        self.ca_path: Path = _write(self.dir / "ca.crt", self.ca_pem)
        self.ca_key_path: Path = _write(self.dir / "ca.key", _key_pem(self._ca_key), 0o600)

        self.apiserver_cert, self.apiserver_key = self.serving_cert(
            "kube-apiserver",
            dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"],
            ips=["127.0.0.1", "10.0.0.1"],
        )
        self.admin_cert, self.admin_key = self.client_cert("admin", "admin", ["system:masters"])
        self.scheduler_cert, self.scheduler_key = self.client_cert(
            "kube-scheduler", "system:kube-scheduler")
        self.controller_manager_cert, self.controller_manager_key = self.client_cert(
            "kube-controller-manager", "system:kube-controller-manager")

        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key_path: Path = _write(self.dir / "sa.key", _key_pem(sa_key), 0o600)
        self.sa_pub_path: Path = _write(self.dir / "sa.pub", sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _issue(self, name: str, subject: x509.Name, usage, sans: Sequence[x509.GeneralName],
               days: Optional[int]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _dt.datetime.now(_dt.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(hours=1))
            .not_valid_after(now + _dt.timedelta(days=days or self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        cert_path = _write(self.dir / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        key_path = _write(self.dir / f"{name}.key", _key_pem(key), 0o600)
        return cert_path, key_path

    def serving_cert(self, name: str, dns: Iterable[str] = (), ips: Iterable[str] = ("127.0.0.1",),
                     days: Optional[int] = None) -> tuple[Path, Path]:
        """Issue a TLS server certificate; returns ``(cert_path, key_path)``.

        Go ignores the CN, so the name the client dials must be in ``dns``/``ips``.
        """
        dns, ips = list(dns), list(ips)
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cn = dns[0] if dns else (ips[0] if ips else name)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        return self._issue(name, subject, ExtendedKeyUsageOID.SERVER_AUTH, sans, days)

    def serve(self, config) -> ssl.SSLContext:
        """Give a host's ``config`` a serving certificate for 127.0.0.1; returns the context a client
        verifies it with."""
        config.tls_cert_file, config.tls_private_key_file = map(str, self.serving_cert("host"))
        return ssl.create_default_context(cafile=str(self.ca_path))

    def client_cert(self, name: str, user: str, groups: Iterable[str] = (),
                    days: Optional[int] = None) -> tuple[Path, Path]:
        """Issue a client certificate (CN=user, O=groups); returns ``(cert_path, key_path)``."""
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(name, x509.Name(attrs), ExtendedKeyUsageOID.CLIENT_AUTH, (), days)


# --------------------------------------------------------------------------
# Control plane
# --------------------------------------------------------------------------


_PORTS_GIVEN: set = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port nothing listens on, for a server started later. Taken from below the kernel's
    ephemeral range: a port the kernel hands out (a bind to port 0) is one any outgoing connection
    may take before the server given it binds it (seen: kwok, "address already in use", while the
    API server, controllers and scheduler were opening connections)."""
    low = _ephemeral_low()
    for _ in range(1000):
        port = secrets.choice(range(max(1024, low - 12000), low)) if low > 2048 else 0
        if port in _PORTS_GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log at %s)" % path
    return "\n".join(data[-lines:])


_ETCD_DIR_PREFIX = "admission-host-etcd-"


def _sweep_stale_etcd_dirs(base: Path) -> None:
    """Remove etcd data dirs (RAM on tmpfs) left behind by killed test runs."""
    for d in base.glob(_ETCD_DIR_PREFIX + "*"):
        try:
            pid = int((d / "owner.pid").read_text())
            os.kill(pid, 0)
            continue  # owner still alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # unreadable, or another user's process
        shutil.rmtree(d, ignore_errors=True)


def _load_libc():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


_LIBC = _load_libc()  # loaded up front: the pre-exec hook must not dlopen after fork


def _die_with_parent() -> None:
    # Runs in the child before exec: ask the kernel to SIGTERM the component
    # if the Python process dies, so a crashed test run leaks no servers.
    # (PDEATHSIG fires when the *thread* that started the child exits; start
    # the control plane from a long-lived thread, e.g. the main one.)
    _LIBC.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


class _Proc:
    """One control-plane component process with its log file."""

    def __init__(self, name: str, log_path: Path):
        self.name = name
        self.log_path = log_path
        self.popen: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None

    def start(self, argv: Sequence[str], env: Optional[dict] = None) -> None:
        self.stop()  # reap a previous, possibly crashed, instance
        self._log = open(self.log_path, "ab")
        self._log.write(("\n==> %s %s\n" % (time.strftime("%H:%M:%S"), " ".join(argv))).encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # Ctrl-C in a terminal must not hit the servers directly
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise ControlPlaneError("%s exited with code %s; last log lines (%s):\n%s" % (
                self.name, self.popen.returncode, self.log_path, _tail(self.log_path)))

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
            self.popen = None
        if self._log is not None:
            self._log.close()
            self._log = None


class ControlPlane:
    """The release's components on free loopback ports (see the module's docstring).

    Example::

        with ControlPlane(tmp_path) as cp:
            core = kubernetes.client.CoreV1Api(cp.api_client())
            create_node(core, "node-1")

    Every ``start()`` begins with an empty etcd; ``restart_apiserver()`` keeps it.
    """

    def __init__(self, workdir: Path, bin_dir: Optional[Path] = None, release: Optional[Release] = None,
                 service_network: bool = False, component_flags: Optional[dict] = None):
        self.workdir = Path(workdir).resolve()
        # Flags added to a component's own, by its name: {"kube-scheduler": ["--kube-api-qps=500"]}.
        self.component_flags = dict(component_flags or {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        # With a service network, webhooks configured by Service reach what the test routes there.
        self.services: Optional[ServiceNetwork] = ServiceNetwork(self.workdir) if service_network else None
        self.release = release or selected_release()
        self.bin_dir = Path(bin_dir) if bin_dir is not None else ensure_binaries(self.release)
        self.etcd_bin = find_etcd(self.bin_dir)
        for name in self.release.binaries:
            if not (self.bin_dir / name).is_file():
                raise ControlPlaneError("%s missing; call ensure_binaries() or run %s" % (
                    self.bin_dir / name, self.release.build_script))

        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.scheduler_port = free_port()
        self.controller_manager_port = free_port()
        self.kwok_port = free_port()
        self.autoscaler_ports = (free_port(), free_port())

        self._certs: Optional[Certs] = None
        self._admin_token = secrets.token_hex(16)
        self._etcd_data: Optional[Path] = None
        self._etcd = _Proc("etcd", self.workdir / "etcd.log")
        self._apiserver = _Proc("kube-apiserver", self.workdir / "kube-apiserver.log")
        self._scheduler = _Proc("kube-scheduler", self.workdir / "kube-scheduler.log")
        self._controller_manager = _Proc("kube-controller-manager", self.workdir / "kube-controller-manager.log")
        self._kwok = _Proc("kwok", self.workdir / "kwok.log")
        self._autoscaler = _Proc("karpenter", self.workdir / "karpenter.log")
        self._atexit_registered = False

    # ---- public properties ----------------------------------------------

    @property
    def kubectl(self) -> str:
        """The release's own kubectl where it has one, else what :func:`kubectl_path` finds (looked
        up at first use: a test that needs none does not fail for want of one)."""
        own = self.bin_dir / "kubectl"
        if "kubectl" in self.release.binaries or os.access(own, os.X_OK):
            return str(own)
        return kubectl_path(self.release)

    @property
    def server(self) -> str:
        return "https://127.0.0.1:%d" % self.apiserver_port

    @property
    def etcd_url(self) -> str:
        return "http://127.0.0.1:%d" % self.etcd_port

    @property
    def certs(self) -> Certs:
        if self._certs is None:
            self._certs = Certs(self.workdir / "pki")
        return self._certs

    @property
    def admin_token(self) -> str:
        return self._admin_token

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    # ---- lifecycle ------------------------------------------------------

    def start(self, timeout: float = 60.0) -> "ControlPlane":
        """Start every component of the release; wait until each is ready."""
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._write_static_files()
            if self.services is not None:
                self.services.start()
            self._start_etcd(timeout)
            self.start_apiserver(timeout)
            if self.release.simulated_nodes:
                self._start_controller_manager(timeout)
            self._start_scheduler(timeout)
            if self.release.simulated_nodes:
                self._start_kwok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything (SIGTERM, then SIGKILL after a grace period). Safe to call repeatedly."""
        self._autoscaler.stop()
        self._kwok.stop()
        self._scheduler.stop()
        self._controller_manager.stop()
        self.stop_apiserver()
        self._etcd.stop()
        if self.services is not None:
            self.services.stop()
        if self._etcd_data is not None:
            shutil.rmtree(self._etcd_data, ignore_errors=True)
            self._etcd_data = None

    def stop_apiserver(self, grace: float = 3.0) -> None:
        """Stop kube-apiserver (SIGTERM, SIGKILL after ``grace`` seconds).

        On SIGTERM it stops listening at once but then waits up to 60 s for
        open watches (e.g. the scheduler's) to drain; all state is in etcd, so
        there is nothing to lose by not waiting.
        """
        self._apiserver.stop(grace)

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start kube-apiserver on its fixed port and wait for ``/readyz``."""
        if self._apiserver.running:
            return
        c = self.certs
        self._apiserver.start([
            str(self.bin_dir / "kube-apiserver"),
            "--etcd-servers=" + self.etcd_url,
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--secure-port=%d" % self.apiserver_port,
            # 1.20 still had an insecure port to turn off; newer releases refuse a loopback
            # address for the "kubernetes" Service's endpoints, which nothing here dials.
            *(["--insecure-port=0"] if self.release is OLDEST else ["--endpoint-reconciler-type=none"]),
            "--tls-cert-file=%s" % c.apiserver_cert,
            "--tls-private-key-file=%s" % c.apiserver_key,
            "--client-ca-file=%s" % c.ca_path,
            "--token-auth-file=%s" % (self.workdir / "tokens.csv"),
            "--service-account-issuer=" + SERVICE_ACCOUNT_ISSUER,
            "--service-account-key-file=%s" % c.sa_pub_path,
            "--service-account-signing-key-file=%s" % c.sa_key_path,
            "--service-cluster-ip-range=" + SERVICE_CLUSTER_IP_RANGE,
            "--authorization-mode=Node,RBAC",
            # Tests create pods right after their namespace, before the controller manager (if
            # any) has made its "default" ServiceAccount. Without a node lifecycle controller
            # (1.20) nothing would lift the not-ready taint from new nodes.
            "--disable-admission-plugins=ServiceAccount" + (
                "" if self.release.simulated_nodes else ",TaintNodesByCondition"),
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            "--allow-privileged=true",
            "--cert-dir=%s" % (self.workdir / "apiserver-certs"),
            "--profiling=false",
            *(["--egress-selector-config-file=%s" % self.services.config_path] if self.services else []),
        ])
        self._wait_https(self._apiserver, self.server + "/readyz", timeout,
                         headers={"Authorization": "Bearer " + self._admin_token})

    def restart_apiserver(self, timeout: float = 60.0) -> None:
        """Stop and start only the API server (same port, same etcd data)."""
        self.stop_apiserver()
        self.start_apiserver(timeout)

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- clients and kubeconfigs ---------------------------------------

    def api_client(self):
        """A ``kubernetes.client.ApiClient`` authenticated as admin (system:masters)."""
        import kubernetes.client

        cfg = kubernetes.client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = str(self.certs.ca_path)
        cfg.cert_file = str(self.certs.admin_cert)
        cfg.key_file = str(self.certs.admin_key)
        return kubernetes.client.ApiClient(cfg)

    def write_kubeconfig(self, path: Path, token: Optional[str] = None,
                         client_cert: Optional[Path] = None, client_key: Optional[Path] = None,
                         user: str = "user") -> Path:
        """Write a kubeconfig for this server (CA embedded) and a token or client cert.

        JSON is valid YAML, so kubectl and the Python client read it as is.
        """
        import base64

        def b64(p) -> str:
            return base64.b64encode(Path(p).read_bytes()).decode()

        creds: dict = {}
        if token is not None:
            creds["token"] = token
        if client_cert is not None:
            creds["client-certificate-data"] = b64(client_cert)
        if client_key is not None:
            creds["client-key-data"] = b64(client_key)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {
                "server": self.server, "certificate-authority-data": b64(self.certs.ca_path)}}],
            "users": [{"name": user, "user": creds}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }
        path = Path(path)
        path.write_text(json.dumps(config, indent=2) + "\n")
        os.chmod(path, 0o600)
        return path

    # ---- internals ------------------------------------------------------

    def _write_static_files(self) -> None:
        c = self.certs
        _write(self.workdir / "tokens.csv",
               ("%s,admin,uid-admin,system:masters\n" % self._admin_token).encode(), 0o600)
        self.write_kubeconfig(self.admin_kubeconfig, client_cert=c.admin_cert,
                              client_key=c.admin_key, user="admin")
        self.write_kubeconfig(self.workdir / "kube-scheduler.kubeconfig", client_cert=c.scheduler_cert,
                              client_key=c.scheduler_key, user="system:kube-scheduler")
        self.write_kubeconfig(self.workdir / "kube-controller-manager.kubeconfig",
                              client_cert=c.controller_manager_cert, client_key=c.controller_manager_key,
                              user="system:kube-controller-manager")

    def _start_etcd(self, timeout: float) -> None:
        if self._etcd_data is not None:
            shutil.rmtree(self._etcd_data, ignore_errors=True)
        # etcd fsyncs on every write; tmpfs makes that free.
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            base = shm
            _sweep_stale_etcd_dirs(shm)
        else:
            base = self.workdir
        self._etcd_data = Path(tempfile.mkdtemp(prefix=_ETCD_DIR_PREFIX, dir=base))
        (self._etcd_data / "owner.pid").write_text(str(os.getpid()))
        peer = "http://127.0.0.1:%d" % self.etcd_peer_port
        self._etcd.start([
            str(self.etcd_bin),
            "--name=e2e",
            "--data-dir=%s" % (self._etcd_data / "data"),
            "--listen-client-urls=" + self.etcd_url,
            "--advertise-client-urls=" + self.etcd_url,
            "--listen-peer-urls=" + peer,
            "--initial-advertise-peer-urls=" + peer,
            "--initial-cluster=e2e=" + peer,
            "--initial-cluster-state=new",
            "--logger=zap",
        ])
        deadline = time.monotonic() + timeout
        while True:
            self._etcd.check_alive()
            try:
                with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError("etcd not healthy after %.0f s; last log lines:\n%s"
                                        % (timeout, _tail(self._etcd.log_path)))
            time.sleep(0.1)

    def _start_component(self, proc: _Proc, port: int, timeout: float, extra: Sequence[str]) -> None:
        """kube-scheduler or kube-controller-manager: its own kubeconfig and serving certificate."""
        cert, key = self.certs.serving_cert(proc.name + "-serving", dns=["localhost"])
        kubeconfig = self.workdir / ("%s.kubeconfig" % proc.name)
        proc.start([
            str(self.bin_dir / proc.name),
            "--kubeconfig=%s" % kubeconfig,
            # Delegated authn/authz for its own /metrics; /healthz is always allowed.
            "--authentication-kubeconfig=%s" % kubeconfig,
            "--authorization-kubeconfig=%s" % kubeconfig,
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=%d" % port,
            "--tls-cert-file=%s" % cert,
            "--tls-private-key-file=%s" % key,
            *extra,
            *self.component_flags.get(proc.name, ()),
        ])
        self._wait_https(proc, "https://127.0.0.1:%d/healthz" % port, timeout)

    def _start_scheduler(self, timeout: float) -> None:
        self._start_component(self._scheduler, self.scheduler_port, timeout,
                              ["--port=0"] if self.release is OLDEST else [])

    def _start_controller_manager(self, timeout: float) -> None:
        c = self.certs
        self._start_component(self._controller_manager, self.controller_manager_port, timeout, [
            # Each controller with its own ServiceAccount's token, as kubeadm runs it.
            "--use-service-account-credentials=true",
            "--service-account-private-key-file=%s" % c.sa_key_path,
            "--root-ca-file=%s" % c.ca_path,
            "--cluster-signing-cert-file=%s" % c.ca_path,
            "--cluster-signing-key-file=%s" % c.ca_key_path,
            "--service-cluster-ip-range=" + SERVICE_CLUSTER_IP_RANGE,
            "--profiling=false",
        ])

    def _start_kwok(self, timeout: float) -> None:
        self._kwok.start([
            str(self.bin_dir / "kwok"),
            "--kubeconfig=%s" % self.admin_kubeconfig,
            "--config=%s" % KWOK_STAGES,
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=%s=fake" % KWOK_ANNOTATION,
            "--server-address=127.0.0.1:%d" % self.kwok_port,
            "--node-lease-duration-seconds=40",
        ])
        self._wait_https(self._kwok, "http://127.0.0.1:%d/healthz" % self.kwok_port, timeout)

    def start_autoscaler(self, timeout: float = 60.0) -> None:
        """Install Karpenter's CRDs and start its KWOK provider: NodePools (with a KWOKNodeClass)
        then grow by simulated nodes for Unschedulable pods and shrink when nodes are empty."""
        if self._autoscaler.running:
            return
        self._run_kubectl("apply", "--server-side", "-f", str(self.bin_dir / "karpenter-crds"))
        self._run_kubectl("wait", "--for=condition=Established", "--timeout=%ds" % timeout,
                          "crd/nodepools.karpenter.sh", "crd/nodeclaims.karpenter.sh",
                          "crd/kwoknodeclasses.karpenter.kwok.sh")
        metrics, health = self.autoscaler_ports
        env = dict(os.environ, KUBECONFIG=str(self.admin_kubeconfig), SYSTEM_NAMESPACE="kube-system")
        self._autoscaler.start([
            str(self.bin_dir / "kwok-karpenter"),
            "--disable-leader-election",
            "--metrics-port=%d" % metrics,
            "--health-probe-port=%d" % health,
            # Decide within a second of the first pending pod instead of batching for up to 10 s.
            "--batch-idle-duration=200ms",
            "--batch-max-duration=1s",
        ], env=env)
        self._wait_https(self._autoscaler, "http://127.0.0.1:%d/healthz" % health, timeout)

    def stop_autoscaler(self) -> None:
        self._autoscaler.stop()

    def _run_kubectl(self, *args: str) -> str:
        proc = subprocess.run([self.kubectl, "--kubeconfig", str(self.admin_kubeconfig), *args],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise ControlPlaneError("kubectl %s: %s" % (" ".join(args), proc.stderr.strip()))
        return proc.stdout

    def _wait_https(self, proc: _Proc, url: str, timeout: float, headers: Optional[dict] = None) -> None:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca_path))
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            proc.check_alive()
            try:
                req = urllib.request.Request(url, headers=headers or {})
                with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                last = "HTTP %d: %s" % (e.code, e.read()[-500:].decode(errors="replace"))
            except (OSError, ssl.SSLError) as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise ControlPlaneError("%s not ready at %s after %.0f s (%s); last log lines (%s):\n%s" % (
                    proc.name, url, timeout, last, proc.log_path, _tail(proc.log_path)))
            time.sleep(0.1)


# --------------------------------------------------------------------------
# Fake nodes
# --------------------------------------------------------------------------


def create_node(core_v1, name: str, labels: Optional[dict] = None, taints: Optional[list] = None,
                cpu: str = "2", memory: str = "4Gi", pods: str = "110", timeout: float = 30.0):
    """Create a Node that is Ready with the given capacity; return it once the scheduler may use it.

    On a release with KWOK the node is simulated: KWOK registers it (status, lease heartbeats) and
    runs the pods bound to it, and the node lifecycle controller lifts the not-ready taint, which
    this waits for. On 1.20 the status is written here and nothing runs the pods.
    ``taints`` items are dicts like ``{"key": "k", "value": "v", "effect": "NoSchedule"}``.
    """
    from kubernetes import client

    labels = dict(labels or {})
    labels.setdefault("kubernetes.io/hostname", name)
    labels.setdefault("kubernetes.io/os", "linux")
    labels.setdefault("kubernetes.io/arch", "amd64")
    annotations = {KWOK_ANNOTATION: "fake", CAPACITY_ANNOTATION: "cpu=%s,memory=%s,pods=%s" % (cpu, memory, pods)}
    core_v1.create_node({"apiVersion": "v1", "kind": "Node",
                         "metadata": {"name": name, "labels": labels, "annotations": annotations},
                         "spec": {"taints": [dict(t) for t in taints or ()] or None}})

    def usable():
        node = core_v1.read_node(name)
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or ())
        not_ready_taint = any(t.key.startswith("node.kubernetes.io/") for t in node.spec.taints or ())
        return node if ready and not not_ready_taint else None

    deadline = time.monotonic() + timeout
    node = usable()
    if node is None and not _kwok_managed(core_v1):
        # Status is ignored on create; it must go through the status subresource.
        now = _dt.datetime.now(_dt.timezone.utc)
        resources = {"cpu": cpu, "memory": memory, "pods": pods}
        node = core_v1.read_node(name)
        node.status = client.V1NodeStatus(
            capacity=resources, allocatable=resources,
            conditions=[client.V1NodeCondition(
                type="Ready", status="True", reason="KubeletReady", message="fake node",
                last_heartbeat_time=now, last_transition_time=now)],
            addresses=[client.V1NodeAddress(type="Hostname", address=name)],
        )
        return core_v1.replace_node_status(name, node)
    while node is None:
        if time.monotonic() > deadline:
            raise ControlPlaneError("node %s not Ready and untainted after %.0f s" % (name, timeout))
        time.sleep(0.1)
        node = usable()
    return node


def _kwok_managed(core_v1) -> bool:
    """Whether this API server's cluster simulates nodes: every release but the oldest does."""
    from kubernetes import client

    minor = client.VersionApi(core_v1.api_client).get_code().minor
    return "1.%s" % minor.rstrip("+") != OLDEST.minor


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _raise_keyboard_interrupt(signum, frame):
    # Lets SIGTERM stop the servers as cleanly as Ctrl-C does.
    raise KeyboardInterrupt


def _main(argv: Sequence[str]) -> int:
    if list(argv) != ["up"]:
        print("usage: python -m tests.e2e.cluster up", file=sys.stderr)
        return 2
    bin_dir = ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="admission-host-cluster-"))
    started = time.monotonic()
    cp = ControlPlane(workdir, bin_dir)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        cp.start()
        print("control plane up in %.1f s (logs in %s)" % (time.monotonic() - started, workdir))
        print("export KUBECONFIG=%s" % cp.admin_kubeconfig)
        print("# admin token: %s   -- Ctrl-C to stop" % cp.admin_token, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cp.stop()
        print("\ncontrol plane stopped (logs kept in %s)" % workdir, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
