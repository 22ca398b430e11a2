"""Serving certificates with no dependency: a CA and a serving certificate kept in a Secret.

Every replica runs a :class:`CertManager` (no leader needed; the API server arbitrates):

* The Secret (type ``kubernetes.io/tls``: ``tls.crt``, ``tls.key``, ``ca.crt``, plus ``ca.key``
  to sign renewals) is created with POST. When several replicas start at once, one POST wins and
  the others get 409 Conflict and read what the winner wrote: a valid Secret is never overwritten.
* A serving certificate close to its end (a third of its validity, at most 30 days, left), with
  names that no longer cover the Service, or that does not belong to the Secret's CA, is renewed
  with PUT and the Secret's resourceVersion, so concurrent renewals conflict instead of clobbering
  each other: the loser reads the winner's certificate. The CA is kept (the webhook's caBundle
  does not change) until it would expire before a new serving certificate; a new CA is then
  made and the previous one stays in ``ca.crt`` until it expires.
* Each replica then patches the caBundle of every webhook of its MutatingWebhookConfiguration
  (only where it differs), writes the PEM files to its certificate directory (an emptyDir: the
  root filesystem is read-only) and has the serving TLS context reload them. The Secret is
  re-read periodically, so a renewal made by one replica reaches the others without a restart.
* With ``match_conditions`` set, the webhooks' matchConditions are kept equal to it in the same
  rounds (API servers 1.28+ only): what the enabled mutators declare (framework/webhook.py), put
  back within a round when a ``kubectl apply`` or ``helm upgrade`` resets them to the manifests'.

Until the first certificate is in place the host serves a throwaway self-signed one (so
``/healthz`` answers) and ``/readyz`` says why it is not ready.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import ipaddress
import logging
import os
import random
import ssl
import tempfile
import threading
from typing import Callable, List, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from framework.kube.client import JSON_PATCH, STRATEGIC_MERGE_PATCH, ApiError, KubeClient, object_path
from framework.webhook import serves_match_conditions

log = logging.getLogger("admission_host.certs")

DAY = 86400.0
BOOTSTRAP_CA = "admission-host-bootstrap"  # the issuer of the throwaway pair served until the real one
DEFAULT_VALIDITY = 365 * DAY
CA_VALIDITY = 10 * 365 * DAY
MAX_RENEW_BEFORE = 30 * DAY
MAX_CHECK_INTERVAL = 60.0
BACKDATE = datetime.timedelta(minutes=5)  # tolerate clocks a little behind ours
DEFAULT_CERT_DIR = "/run/admission-host/tls"
CERT_FILE, KEY_FILE, CA_FILE, CA_KEY = "tls.crt", "tls.key", "ca.crt", "ca.key"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
LABELS = {"app.kubernetes.io/name": "admission-host", "app.kubernetes.io/managed-by": "admission-host"}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def not_after(cert: x509.Certificate) -> datetime.datetime:
    return getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def not_before(cert: x509.Certificate) -> datetime.datetime:
    return getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)


def renew_before(validity: float) -> float:
    """Seconds before expiry at which a serving certificate of ``validity`` seconds is renewed."""
    return min(MAX_RENEW_BEFORE, validity / 3)


def check_interval(validity: float) -> float:
    """How often the Secret is re-read: often enough that no replica serves close to expiry."""
    return max(0.5, min(MAX_CHECK_INTERVAL, renew_before(validity) / 4))


def service_names(service: str, namespace: str) -> List[str]:
    """The names the API server (and anything in the cluster) may use for the Service."""
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local",
            f"{service}.{namespace}", service]


def normalize_name(name: str) -> str:
    """An IP address in its canonical text form, a DNS name in lower case."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def _general_names(names: Sequence[str]) -> List[x509.GeneralName]:
    out: List[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _same_key(cert: x509.Certificate, key) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def new_ca(now: Optional[datetime.datetime] = None, validity: float = CA_VALIDITY,
           common_name: str = "admission-host-ca") -> Tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that may sign serving certificates only (path length 0)."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    # A CN unique per CA: two CAs of the same name in one caBundle would confuse chain building.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}-{int(now.timestamp())}")])
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + datetime.timedelta(seconds=validity))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue_serving(ca_cert: x509.Certificate, ca_key, names: Sequence[str], now: Optional[datetime.datetime] = None,
                  validity: float = DEFAULT_VALIDITY) -> Tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for ``names`` (DNS names or IP addresses), never outliving its CA."""
    if not names:
        raise ValueError("a serving certificate needs at least one name")
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    end = min(now + datetime.timedelta(seconds=validity), not_after(ca_cert))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


@dataclasses.dataclass(frozen=True)
class Bundle:
    """The PEMs of one Secret: ``ca_pem`` may hold several CAs (the signing one first)."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    ca_key_pem: bytes

    @classmethod
    def from_secret(cls, secret: dict) -> Optional["Bundle"]:
        data = secret.get("data") or {}
        try:
            return cls(*(base64.b64decode(data.get(k) or "") for k in (CERT_FILE, KEY_FILE, CA_FILE, CA_KEY)))
        except (ValueError, TypeError):
            return None

    def secret_data(self) -> dict:
        return {k: base64.b64encode(v).decode() for k, v in
                ((CERT_FILE, self.cert_pem), (KEY_FILE, self.key_pem), (CA_FILE, self.ca_pem), (CA_KEY, self.ca_key_pem))}

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def ca_certificates(self) -> List[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.ca_pem)

    def signing_ca(self):
        """``(ca_cert, ca_key)`` of the CA in ``ca.crt`` that ``ca.key`` belongs to; raise if none."""
        key = serialization.load_pem_private_key(self.ca_key_pem, password=None)
        for cert in self.ca_certificates:
            if _same_key(cert, key):
                return cert, key
        raise ValueError("ca.key matches no certificate of ca.crt")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _san_strings(cert: x509.Certificate) -> set:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def renewal_reason(bundle: Optional[Bundle], names: Sequence[str], now: Optional[datetime.datetime] = None,
                   validity: float = DEFAULT_VALIDITY) -> Optional[str]:
    """Why the Secret's certificates must be (re)issued, or None when they are fine as they are."""
    if bundle is None:
        return "the Secret holds no certificate"
    now = now or _now()
    try:
        ca_cert, ca_key = bundle.signing_ca()
        cert = bundle.certificate
        key = serialization.load_pem_private_key(bundle.key_pem, password=None)
    except (ValueError, TypeError) as exc:
        return f"the Secret's certificates do not load ({exc})"
    if not _is_ca(ca_cert):
        return "ca.crt is not a CA certificate"
    if not _same_key(cert, key):
        return "tls.key does not belong to tls.crt"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "tls.crt was not issued by the CA of ca.key"
    missing = sorted({normalize_name(n) for n in names} - {normalize_name(n) for n in _san_strings(cert)})
    if missing:
        return f"tls.crt does not name {', '.join(missing)}"
    if not_before(cert) > now + BACKDATE:
        return "tls.crt is not valid yet"
    left = (not_after(cert) - now).total_seconds()
    if left <= renew_before(validity):
        return f"tls.crt expires at {not_after(cert).isoformat()}"
    return None


def make_bundle(names: Sequence[str], previous: Optional[Bundle] = None, now: Optional[datetime.datetime] = None,
                validity: float = DEFAULT_VALIDITY, ca_validity: float = CA_VALIDITY) -> Bundle:
    """A new serving certificate, signed by ``previous``'s CA while that CA outlives it, else by a new CA.

    With a new CA, the previous CAs still valid stay in ``ca.crt`` after it, so clients that
    trust them keep working during the change.
    """
    now = now or _now()
    ca = None
    old_cas: List[x509.Certificate] = []
    if previous is not None:
        try:
            ca = previous.signing_ca()
            old_cas = previous.ca_certificates
        except (ValueError, TypeError):
            ca = None
        if ca is not None and (not _is_ca(ca[0]) or (not_after(ca[0]) - now).total_seconds() < validity):
            ca = None
    if ca is None:
        ca = new_ca(now, max(ca_validity, validity))
        trusted = [ca[0]] + [c for c in old_cas if _is_ca(c) and not_after(c) > now]
    else:
        trusted = [ca[0]] + [c for c in old_cas if c != ca[0] and _is_ca(c) and not_after(c) > now]
    cert, key = issue_serving(ca[0], ca[1], names, now, validity)
    return Bundle(_cert_pem(cert), _key_pem(key), b"".join(_cert_pem(c) for c in trusted), _key_pem(ca[1]))


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def bootstrap_in_use(cert_file: str) -> Optional[str]:
    """For /readyz of a worker that serves files another process keeps: a reason while the
    throwaway pair of :meth:`CertManager.prepare` is still the one in ``cert_file``."""
    try:
        with open(cert_file, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError) as exc:
        return f"serving certificate: cannot read {cert_file}: {exc}"
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    if issuer and issuer[0].value.startswith(BOOTSTRAP_CA + "-"):
        return "serving certificate: waiting for the Secret's to be installed"
    return None


class CertManager:
    """Keeps the serving certificate of one host in the Secret ``namespace/secret_name``.

    ``on_change`` is called after new PEM files were written (the server reloads them there).
    """

    def __init__(self, kube: KubeClient, namespace: str, secret_name: str, names: Sequence[str], *,
                 webhook_configuration: Optional[str] = None, cert_dir: str = DEFAULT_CERT_DIR,
                 validity: float = DEFAULT_VALIDITY, ca_validity: float = CA_VALIDITY,
                 on_change: Optional[Callable[[], None]] = None):
        if not secret_name:
            raise ValueError("the certificate Secret needs a name")
        self.kube, self.namespace, self.secret_name = kube, namespace, secret_name
        self.names = list(dict.fromkeys(normalize_name(n) for n in names))
        self.webhook_configuration = webhook_configuration
        self.cert_dir = cert_dir
        self.validity, self.ca_validity = float(validity), float(ca_validity)
        self.on_change = on_change
        self.interval = check_interval(self.validity)
        self.secret_path = object_path("v1", "secrets", namespace=namespace)
        self.installed: Optional[Bundle] = None  # what the files in cert_dir hold
        self.installed_not_after: Optional[datetime.datetime] = None
        self.error: Optional[str] = None
        self.ca_bundle_patched = False
        # The webhooks' matchConditions to keep (framework/webhook.py); None leaves them alone.
        self.match_conditions: Optional[List[dict]] = None
        self._match_conditions_served: Optional[bool] = None  # by the API server: 1.28+
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def from_config(cls, kube: KubeClient, config) -> "CertManager":
        namespace = config.lease_namespace
        names = service_names(config.service_name, namespace) + list(config.cert_extra_sans or ())
        return cls(kube, namespace, config.cert_secret, names, webhook_configuration=config.webhook_configuration,
                   cert_dir=config.cert_dir, validity=config.cert_validity)

    @property
    def cert_file(self) -> str:
        return os.path.join(self.cert_dir, CERT_FILE)

    @property
    def key_file(self) -> str:
        return os.path.join(self.cert_dir, KEY_FILE)

    @property
    def ca_file(self) -> str:
        return os.path.join(self.cert_dir, CA_FILE)

    # -- start-up --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Make sure HTTPS can start: a throwaway self-signed pair if ``cert_dir`` has no loadable one.

        Nothing trusts it; it only lets /healthz and /readyz answer until the real one is in place.
        """
        os.makedirs(self.cert_dir, mode=0o700, exist_ok=True)
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.cert_file, self.key_file)
            return
        except (OSError, ssl.SSLError):
            pass
        ca_cert, ca_key = new_ca(validity=DAY, common_name=BOOTSTRAP_CA)
        cert, key = issue_serving(ca_cert, ca_key, self.names, validity=DAY)
        write_atomically(self.key_file, _key_pem(key), 0o600)
        write_atomically(self.cert_file, _cert_pem(cert))

    def not_ready(self) -> Optional[str]:
        """For /readyz: None once the Secret's certificate is the one served."""
        if self.installed is not None:
            end = self.installed_not_after
            if end is not None and end <= _now():
                return f"serving certificate expired at {end.isoformat()} ({self.error or 'not renewed'})"
            return None
        where = f"{self.namespace}/{self.secret_name}"
        return f"serving certificate: waiting for Secret {where}" + (f" ({self.error})" if self.error else "")

    # -- one round -------------------------------------------------------------------------------
    def sync(self) -> Bundle:
        """Ensure the Secret, the webhook's caBundle and the served files agree; return the bundle."""
        bundle = self.ensure_secret()
        self.ca_bundle_patched = self.patch_ca_bundle(bundle.ca_pem)
        if bundle != self.installed:
            self.install(bundle)
        if self.match_conditions is not None:
            self.keep_match_conditions(self.match_conditions)
        return bundle

    def ensure_secret(self) -> Bundle:
        path = f"{self.secret_path}/{self.secret_name}"
        for _ in range(10):
            try:
                secret = self.kube.get(path)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                secret = None
            if secret is None:
                bundle = make_bundle(self.names, None, validity=self.validity, ca_validity=self.ca_validity)
                body = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                        "metadata": {"name": self.secret_name, "namespace": self.namespace, "labels": dict(LABELS)},
                        "data": bundle.secret_data()}
                try:
                    self.kube.post(self.secret_path, body)
                except ApiError as exc:
                    if exc.status == 409:  # another replica created it first: use theirs
                        log.info("Secret %s/%s was created by another replica; reading it",
                                 self.namespace, self.secret_name)
                        continue
                    raise
                log.info("created Secret %s/%s with a new CA and serving certificate (valid until %s)",
                         self.namespace, self.secret_name, not_after(bundle.certificate).isoformat())
                return bundle
            current = Bundle.from_secret(secret)
            reason = renewal_reason(current, self.names, validity=self.validity)
            if reason is None:
                return current
            bundle = make_bundle(self.names, current, validity=self.validity, ca_validity=self.ca_validity)
            secret["data"] = dict(secret.get("data") or {}, **bundle.secret_data())
            try:
                self.kube.put(path, secret)  # carries resourceVersion: a concurrent renewal conflicts
            except ApiError as exc:
                if exc.status == 409:
                    log.info("Secret %s/%s was renewed by another replica; reading it", self.namespace,
                             self.secret_name)
                    continue
                raise
            new_ca = current is None or bundle.ca_key_pem != current.ca_key_pem
            log.info("renewed the serving certificate in Secret %s/%s (%s)%s; valid until %s", self.namespace,
                     self.secret_name, reason, " with a new CA" if new_ca else "",
                     not_after(bundle.certificate).isoformat())
            return bundle
        raise ApiError(409, f"Secret {self.namespace}/{self.secret_name} keeps changing under us")

    def patch_ca_bundle(self, ca_pem: bytes) -> bool:
        """Set caBundle on every webhook of the configuration where it differs; True when all agree."""
        if not self.webhook_configuration:
            return True
        path = f"{WEBHOOKS}/{self.webhook_configuration}"
        try:
            config = self.kube.get(path)
        except ApiError as exc:
            if exc.status == 404:
                log.warning("MutatingWebhookConfiguration %s not found; its caBundle will be set once it exists",
                            self.webhook_configuration)
                return False
            raise
        wanted = base64.b64encode(ca_pem).decode()
        stale = [hook["name"] for hook in config.get("webhooks") or ()
                 if (hook.get("clientConfig") or {}).get("caBundle") != wanted]
        if not stale:
            return True
        # Strategic merge by webhook name: nothing else in the configuration is touched.
        patch = {"webhooks": [{"name": name, "clientConfig": {"caBundle": wanted}} for name in stale]}
        self.kube.patch(path, patch, content_type=STRATEGIC_MERGE_PATCH)
        log.info("set the caBundle of MutatingWebhookConfiguration %s (webhooks: %s)",
                 self.webhook_configuration, ", ".join(stale))
        return True

    def keep_match_conditions(self, wanted: List[dict]) -> bool:
        """Set every webhook's matchConditions to ``wanted`` where they differ; True when all agree.

        An API error is logged and tried again next round: until then the API server sends more
        than the mutators need, or less, which is no reason to stop serving."""
        if not self.webhook_configuration:
            return True
        path = f"{WEBHOOKS}/{self.webhook_configuration}"
        try:
            if self._match_conditions_served is None:
                version = self.kube.get("/version")
                self._match_conditions_served = serves_match_conditions(version)
                if not self._match_conditions_served:
                    log.info("Kubernetes %s has no webhook matchConditions (1.28+): every request the rules "
                             "match is sent", version.get("gitVersion", "?"))
            if not self._match_conditions_served:
                return True
            config = self.kube.get(path)
            ops = []
            for index, hook in enumerate(config.get("webhooks") or ()):
                if (hook.get("matchConditions") or []) == wanted:
                    continue
                # By index, tested by name: a configuration changed meanwhile refuses the patch.
                ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": hook["name"]})
                if wanted:
                    ops.append({"op": "add", "path": f"/webhooks/{index}/matchConditions", "value": wanted})
                else:
                    ops.append({"op": "remove", "path": f"/webhooks/{index}/matchConditions"})
            if ops:
                self.kube.patch(path, ops, content_type=JSON_PATCH)
                log.info("set the matchConditions of MutatingWebhookConfiguration %s to the enabled mutators' "
                         "(%s)", self.webhook_configuration, ", ".join(c["name"] for c in wanted) or "none")
            return True
        except ApiError as exc:
            if exc.status != 404:  # a missing configuration is reported with its caBundle
                log.warning("matchConditions of MutatingWebhookConfiguration %s not set: %s",
                            self.webhook_configuration, exc)
            return False

    def install(self, bundle: Bundle) -> None:
        """Write the PEMs (the key first: a reload never pairs the new certificate with the old key)."""
        os.makedirs(self.cert_dir, mode=0o700, exist_ok=True)
        write_atomically(self.ca_file, bundle.ca_pem)
        write_atomically(self.key_file, bundle.key_pem, 0o600)
        write_atomically(self.cert_file, bundle.cert_pem)
        if self.on_change is not None:
            self.on_change()
        cert = bundle.certificate
        self.installed, self.installed_not_after = bundle, not_after(cert)
        self.error = None
        log.info("serving certificate %x from Secret %s/%s in place (valid until %s)", cert.serial_number,
                 self.namespace, self.secret_name, not_after(cert).isoformat())

    # -- background ------------------------------------------------------------------------------
    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # the API server may be away, or RBAC wrong: keep trying
                failures += 1
                self.error = str(exc)
                log.warning("serving certificate: %s", exc, exc_info=not isinstance(exc, ApiError))
            else:
                failures = 0 if self.ca_bundle_patched else failures + 1
            if failures:
                wait = min(self.interval, 2.0 ** min(failures - 1, 6)) * random.uniform(0.8, 1.2)
            else:
                wait = self.interval * random.uniform(0.9, 1.1)
            self._stop.wait(wait)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="serving-certificate", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
