"""A throwaway Kubernetes v1.20 control plane for end-to-end tests.

Runs etcd, kube-apiserver and kube-scheduler as local processes on loopback
ports. There are no kubelets and no controller manager: Pods are bound to fake
Node objects by the real scheduler but never run, and nothing garbage-collects
or finishes namespace deletion, so every ``ControlPlane.start()`` uses a fresh
etcd data directory.

Binaries come from ``hack/kube-control-plane/build.sh`` (built once per machine
into ``~/.cache/admission-host/kube-bin`` or ``$ADMISSION_HOST_KUBE_BIN``);
etcd is Debian's ``/usr/bin/etcd``.

Usage::

    python -m tests.e2e.cluster up     # start, print KUBECONFIG, Ctrl-C to stop
"""

from __future__ import annotations

import atexit
import datetime as _dt
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
from pathlib import Path
from typing import IO, Iterable, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "kube-control-plane" / "build.sh"
BINARIES = ("kube-apiserver", "kube-scheduler")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"

__all__ = [
    "BUILD_SCRIPT",
    "Certs",
    "ControlPlane",
    "ControlPlaneError",
    "create_node",
    "default_bin_dir",
    "ensure_binaries",
    "find_etcd",
]


class ControlPlaneError(RuntimeError):
    """A control-plane component failed to build, start or become ready."""


# --------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------


def default_bin_dir() -> Path:
    """Where build.sh installs the binaries (same defaults as the script)."""
    env = os.environ.get("ADMISSION_HOST_KUBE_BIN")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("ADMISSION_HOST_CACHE")
    if cache:
        return Path(cache).expanduser() / "kube-bin"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "admission-host" / "kube-bin"


def find_etcd(bin_dir: Optional[Path] = None) -> Path:
    """Locate etcd: ``bin_dir/etcd``, then ``$PATH``, then ``/usr/bin/etcd``."""
    candidates = []
    if bin_dir is not None:
        candidates.append(Path(bin_dir) / "etcd")
    which = shutil.which("etcd")
    if which:
        candidates.append(Path(which))
    candidates.append(Path("/usr/bin/etcd"))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise ControlPlaneError(
        "etcd not found (install Debian's etcd-server, or run %s)" % BUILD_SCRIPT
    )


def _binaries_ok(bin_dir: Path) -> bool:
    for name in BINARIES:
        path = bin_dir / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            return False
        try:
            subprocess.run([str(path), "--version"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return False
    return True


def ensure_binaries() -> Path:
    """Return the directory holding kube-apiserver and kube-scheduler.

    Runs build.sh (streaming its progress to stderr) when the binaries or etcd
    are missing; that takes about six minutes the first time on two cores.
    """
    bin_dir = default_bin_dir()
    if _binaries_ok(bin_dir):
        try:
            find_etcd(bin_dir)
            return bin_dir
        except ControlPlaneError:
            pass
    env = dict(os.environ, ADMISSION_HOST_KUBE_BIN=str(bin_dir))
    proc = subprocess.Popen(["bash", str(BUILD_SCRIPT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        sys.stderr.write(line)
        sys.stderr.flush()
    if proc.wait() != 0:
        raise ControlPlaneError(
            "%s failed (exit %d):\n%s" % (BUILD_SCRIPT, proc.returncode, "".join(lines[-40:]))
        )
    if not _binaries_ok(bin_dir):
        raise ControlPlaneError("%s succeeded but %s has no working binaries" % (BUILD_SCRIPT, bin_dir))
    find_etcd(bin_dir)
    return bin_dir


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

    def client_cert(self, name: str, user: str, groups: Iterable[str] = (),
                    days: Optional[int] = None) -> tuple[Path, Path]:
        """Issue a client certificate (CN=user, O=groups); returns ``(cert_path, key_path)``."""
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(name, x509.Name(attrs), ExtendedKeyUsageOID.CLIENT_AUTH, (), days)


# --------------------------------------------------------------------------
# Control plane
# --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def start(self, argv: Sequence[str]) -> None:
        self.stop()  # reap a previous, possibly crashed, instance
        self._log = open(self.log_path, "ab")
        self._log.write(("\n==> %s %s\n" % (time.strftime("%H:%M:%S"), " ".join(argv))).encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
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
    """etcd + kube-apiserver + kube-scheduler on free loopback ports.

    Example::

        with ControlPlane(tmp_path, ensure_binaries()) as cp:
            core = kubernetes.client.CoreV1Api(cp.api_client())
            create_node(core, "node-1")

    Every ``start()`` begins with an empty etcd; ``restart_apiserver()`` keeps it.
    """

    def __init__(self, workdir: Path, bin_dir: Optional[Path] = None):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bin_dir = Path(bin_dir) if bin_dir is not None else default_bin_dir()
        self.etcd_bin = find_etcd(self.bin_dir)
        for name in BINARIES:
            if not (self.bin_dir / name).is_file():
                raise ControlPlaneError(
                    "%s missing; call ensure_binaries() or run %s" % (self.bin_dir / name, BUILD_SCRIPT))

        self.etcd_port = _free_port()
        self.etcd_peer_port = _free_port()
        self.apiserver_port = _free_port()
        self.scheduler_port = _free_port()

        self._certs: Optional[Certs] = None
        self._admin_token = secrets.token_hex(16)
        self._etcd_data: Optional[Path] = None
        self._etcd = _Proc("etcd", self.workdir / "etcd.log")
        self._apiserver = _Proc("kube-apiserver", self.workdir / "kube-apiserver.log")
        self._scheduler = _Proc("kube-scheduler", self.workdir / "kube-scheduler.log")
        self._atexit_registered = False

    # ---- public properties ----------------------------------------------

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
        """Start etcd, kube-apiserver and kube-scheduler; wait until each is ready."""
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._write_static_files()
            self._start_etcd(timeout)
            self.start_apiserver(timeout)
            self._start_scheduler(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything (SIGTERM, then SIGKILL after a grace period). Safe to call repeatedly."""
        self._scheduler.stop()
        self.stop_apiserver()
        self._etcd.stop()
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
            "--insecure-port=0",
            "--tls-cert-file=%s" % c.apiserver_cert,
            "--tls-private-key-file=%s" % c.apiserver_key,
            "--client-ca-file=%s" % c.ca_path,
            "--token-auth-file=%s" % (self.workdir / "tokens.csv"),
            "--service-account-issuer=" + SERVICE_ACCOUNT_ISSUER,
            "--service-account-key-file=%s" % c.sa_pub_path,
            "--service-account-signing-key-file=%s" % c.sa_key_path,
            "--service-cluster-ip-range=" + SERVICE_CLUSTER_IP_RANGE,
            "--authorization-mode=Node,RBAC",
            # No controller manager creates the "default" ServiceAccount, and
            # nothing would lift the not-ready taint from fake nodes.
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            "--allow-privileged=true",
            "--cert-dir=%s" % (self.workdir / "apiserver-certs"),
            "--profiling=false",
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

    def _start_scheduler(self, timeout: float) -> None:
        cert, key = self.certs.serving_cert("kube-scheduler-serving", dns=["localhost"])
        kubeconfig = self.workdir / "kube-scheduler.kubeconfig"
        self._scheduler.start([
            str(self.bin_dir / "kube-scheduler"),
            "--kubeconfig=%s" % kubeconfig,
            # Delegated authn/authz for its own /metrics; /healthz is always allowed.
            "--authentication-kubeconfig=%s" % kubeconfig,
            "--authorization-kubeconfig=%s" % kubeconfig,
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=%d" % self.scheduler_port,
            "--port=0",
            "--tls-cert-file=%s" % cert,
            "--tls-private-key-file=%s" % key,
        ])
        self._wait_https(self._scheduler, "https://127.0.0.1:%d/healthz" % self.scheduler_port, timeout)

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
                cpu: str = "2", memory: str = "4Gi", pods: str = "110"):
    """Create a Node and mark it Ready with the given capacity, so the scheduler binds to it.

    ``taints`` items are ``V1Taint`` or dicts like ``{"key": "k", "value": "v",
    "effect": "NoSchedule"}``. Returns the Node as stored after the status update.
    """
    from kubernetes import client

    taint_objs = None
    if taints:
        taint_objs = [t if isinstance(t, client.V1Taint) else client.V1Taint(**t) for t in taints]
    labels = dict(labels or {})
    labels.setdefault("kubernetes.io/hostname", name)
    labels.setdefault("kubernetes.io/os", "linux")
    labels.setdefault("kubernetes.io/arch", "amd64")
    core_v1.create_node(client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1NodeSpec(taints=taint_objs),
    ))

    # Status is ignored on create; it must go through the status subresource.
    now = _dt.datetime.now(_dt.timezone.utc)
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    node = core_v1.read_node(name)
    node.status = client.V1NodeStatus(
        capacity=resources,
        allocatable=resources,
        conditions=[client.V1NodeCondition(
            type="Ready", status="True", reason="KubeletReady", message="fake node",
            last_heartbeat_time=now, last_transition_time=now)],
        addresses=[client.V1NodeAddress(type="Hostname", address=name)],
    )
    return core_v1.replace_node_status(name, node)


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
