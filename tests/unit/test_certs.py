"""framework/certs.py: the certificates themselves, when they are renewed, and the Secret protocol.

The protocol (create with POST, adopt on 409, renew with PUT + resourceVersion, caBundle patch) is
run here against a small in-memory API; tests/e2e/test_deploy.py runs it on a real API server.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import os
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from framework import certs
from framework.certs import Bundle, CertManager, make_bundle, renewal_reason, service_names
from framework.cli import build_parser, make_config
from framework.config import ConfigError
from framework.kube.client import ApiError

NAMES = service_names("admission-host", "admission-host") + ["127.0.0.1"]
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return make_bundle(NAMES, now=NOW)


def sans(cert: x509.Certificate):
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.IPAddress)


# -- the certificates ------------------------------------------------------------------------------
def test_service_names_are_every_name_the_service_answers_to():
    assert service_names("web", "ns") == ["web.ns.svc", "web.ns.svc.cluster.local", "web.ns", "web"]


def test_serving_certificate_names_the_service_and_is_for_servers_only(bundle):
    cert = bundle.certificate
    dns, ips = sans(cert)
    assert dns == service_names("admission-host", "admission-host")
    assert ips == [ipaddress.ip_address("127.0.0.1")]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admission-host.admission-host.svc"
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert certs.not_after(cert) - NOW == datetime.timedelta(days=365)
    assert certs.not_before(cert) < NOW  # a little backdated, for clocks behind ours


def test_ca_is_long_lived_and_signs_the_serving_certificate(bundle):
    (ca,) = bundle.ca_certificates
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True and constraints.path_length == 0
    assert certs.not_after(ca) - NOW == datetime.timedelta(days=3650)
    bundle.certificate.verify_directly_issued_by(ca)
    ca_cert, ca_key = bundle.signing_ca()
    assert ca_cert == ca


def test_a_tls_client_trusting_the_ca_accepts_the_service_names(tmp_path):
    current = make_bundle(NAMES)  # valid now, for the TLS stack's own clock
    (tmp_path / "tls.crt").write_bytes(current.cert_pem)
    (tmp_path / "tls.key").write_bytes(current.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client_ctx = ssl.create_default_context(cadata=current.ca_pem.decode())

    def handshake(server_name: str) -> None:
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_name)
        server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):
            done = 0
            for side, out, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
                try:
                    side.do_handshake()
                    done += 1
                except ssl.SSLWantReadError:
                    pass
                peer_in.write(out.read())
            if done == 2:
                return
        raise AssertionError("handshake did not finish")

    for name in ("admission-host.admission-host.svc", "admission-host", "127.0.0.1"):
        handshake(name)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake("other.admission-host.svc")


# -- when to renew -----------------------------------------------------------------------------------
def test_renewal_window_and_check_interval():
    assert certs.renew_before(365 * 86400) == 30 * 86400
    assert certs.check_interval(365 * 86400) == 60
    assert certs.renew_before(12) == 4
    assert certs.check_interval(12) == 1


def test_a_fresh_bundle_needs_nothing(bundle):
    assert renewal_reason(bundle, NAMES, NOW) is None
    assert renewal_reason(bundle, NAMES, NOW + 300 * DAY) is None


def test_renewed_within_30_days_of_expiry(bundle):
    assert renewal_reason(bundle, NAMES, NOW + 334 * DAY) is None
    assert "expires" in renewal_reason(bundle, NAMES, NOW + 336 * DAY)
    assert "expires" in renewal_reason(bundle, NAMES, NOW + 400 * DAY)


def test_short_validity_renews_at_two_thirds():
    short = make_bundle(NAMES, now=NOW, validity=12)
    assert renewal_reason(short, NAMES, NOW + datetime.timedelta(seconds=7), validity=12) is None
    assert renewal_reason(short, NAMES, NOW + datetime.timedelta(seconds=9), validity=12) is not None


def test_renewed_when_a_name_is_missing(bundle):
    assert "other.admission-host.svc" in renewal_reason(bundle, NAMES + ["other.admission-host.svc"], NOW)
    assert renewal_reason(bundle, ["ADMISSION-HOST", "127.0.0.1"], NOW) is None
    v6 = make_bundle(["::1"], now=NOW)
    assert renewal_reason(v6, ["0:0:0:0:0:0:0:1"], NOW) is None


def test_renewed_when_the_pieces_do_not_belong_together(bundle):
    other = make_bundle(NAMES, now=NOW)
    assert "tls.key" in renewal_reason(Bundle(bundle.cert_pem, other.key_pem, bundle.ca_pem, bundle.ca_key_pem),
                                       NAMES, NOW)
    assert "not issued by" in renewal_reason(
        Bundle(bundle.cert_pem, bundle.key_pem, other.ca_pem, other.ca_key_pem), NAMES, NOW)
    assert "ca.key" in renewal_reason(Bundle(bundle.cert_pem, bundle.key_pem, bundle.ca_pem, other.ca_key_pem),
                                      NAMES, NOW)
    assert "do not load" in renewal_reason(Bundle(b"", b"", b"", b""), NAMES, NOW)
    assert "no certificate" in renewal_reason(None, NAMES, NOW)


def test_renewal_keeps_the_ca(bundle):
    later = NOW + 340 * DAY
    renewed = make_bundle(NAMES, bundle, now=later)
    assert renewed.ca_pem == bundle.ca_pem and renewed.ca_key_pem == bundle.ca_key_pem
    assert renewed.certificate.serial_number != bundle.certificate.serial_number
    assert certs.not_after(renewed.certificate) - later == datetime.timedelta(days=365)
    assert renewal_reason(renewed, NAMES, later) is None


def test_a_ca_about_to_expire_is_replaced_and_trusted_beside_the_old_one_until_it_expires(bundle):
    old_ca = bundle.ca_certificates[0]
    near_end = certs.not_after(old_ca) - 100 * DAY  # a new serving certificate would outlive the CA
    renewed = make_bundle(NAMES, bundle, now=near_end)
    new_ca, kept = renewed.ca_certificates
    assert kept == old_ca and new_ca != old_ca
    assert renewed.signing_ca()[0] == new_ca
    renewed.certificate.verify_directly_issued_by(new_ca)
    after_old_expiry = certs.not_after(old_ca) + DAY
    again = make_bundle(NAMES, renewed, now=after_old_expiry)
    assert again.ca_certificates == [new_ca]


def test_serving_certificate_never_outlives_its_ca():
    short_ca = make_bundle(NAMES, now=NOW, validity=100, ca_validity=50)  # the CA is made long enough
    assert certs.not_after(short_ca.certificate) <= certs.not_after(short_ca.ca_certificates[0])


def test_secret_round_trip(bundle):
    data = bundle.secret_data()
    assert set(data) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert Bundle.from_secret({"data": data}) == bundle
    assert Bundle.from_secret({"data": {"tls.crt": "not base64!"}}) is None
    assert renewal_reason(Bundle.from_secret({}), NAMES, NOW) is not None


# -- the Secret protocol, on a small in-memory API ----------------------------------------------------
class MemoryApi:
    """Enough of the API server for one Secret and one MutatingWebhookConfiguration."""

    def __init__(self, webhooks=("a.example.com", "b.example.com")):
        self.objects = {}
        self.rv = 0
        self.calls = []
        self.before_write = None  # a hook to play another replica between our read and our write
        if webhooks is not None:
            self.objects[f"{certs.WEBHOOKS}/admission-host"] = self._stamp({
                "metadata": {"name": "admission-host"},
                "webhooks": [{"name": n, "clientConfig": {"url": "https://x"}} for n in webhooks]})

    def _stamp(self, obj):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return obj

    def get(self, path, **query):
        self.calls.append(("GET", path))
        if path not in self.objects:
            raise ApiError(404, "not found")
        return copy.deepcopy(self.objects[path])

    def post(self, path, body, **query):
        self.calls.append(("POST", path))
        if self.before_write:
            self.before_write("POST")
        key = f"{path}/{body['metadata']['name']}"
        if key in self.objects:
            raise ApiError(409, "already exists")
        self.objects[key] = self._stamp(copy.deepcopy(body))
        return copy.deepcopy(self.objects[key])

    def put(self, path, body, **query):
        self.calls.append(("PUT", path))
        if self.before_write:
            self.before_write("PUT")
        if self.objects[path]["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion"):
            raise ApiError(409, "the object has been modified")
        self.objects[path] = self._stamp(copy.deepcopy(body))
        return copy.deepcopy(self.objects[path])

    def patch(self, path, body, content_type=None, **query):
        self.calls.append(("PATCH", path))
        assert content_type == "application/strategic-merge-patch+json"
        obj = self.objects[path]
        for change in body["webhooks"]:
            hook = next(h for h in obj["webhooks"] if h["name"] == change["name"])
            hook["clientConfig"].update(change["clientConfig"])
        self._stamp(obj)
        return copy.deepcopy(obj)

    def writes(self):
        return [c for c in self.calls if c[0] != "GET"]


SECRET = "/api/v1/namespaces/admission-host/secrets/admission-host-tls"


def manager(api, tmp_path, **kw) -> CertManager:
    kw.setdefault("webhook_configuration", "admission-host")
    return CertManager(api, "admission-host", "admission-host-tls", NAMES, cert_dir=str(tmp_path / "tls"), **kw)


def ca_bundles(api):
    return [h["clientConfig"].get("caBundle") for h in api.objects[f"{certs.WEBHOOKS}/admission-host"]["webhooks"]]


def test_first_start_creates_the_secret_sets_the_ca_bundle_and_writes_the_files(tmp_path):
    api, changes = MemoryApi(), []
    m = manager(api, tmp_path, on_change=lambda: changes.append(1))
    assert "waiting for Secret admission-host/admission-host-tls" in m.not_ready()
    bundle = m.sync()
    secret = api.objects[SECRET]
    assert secret["type"] == "kubernetes.io/tls"
    assert Bundle.from_secret(secret) == bundle
    assert ca_bundles(api) == [base64.b64encode(bundle.ca_pem).decode()] * 2
    assert open(m.cert_file, "rb").read() == bundle.cert_pem
    assert open(m.key_file, "rb").read() == bundle.key_pem
    assert open(m.ca_file, "rb").read() == bundle.ca_pem
    assert stat.S_IMODE(os.stat(m.key_file).st_mode) == 0o600
    assert changes == [1] and m.not_ready() is None


def test_nothing_is_written_while_everything_agrees(tmp_path):
    api, changes = MemoryApi(), []
    m = manager(api, tmp_path, on_change=lambda: changes.append(1))
    m.sync()
    api.calls.clear()
    m.sync()
    assert api.writes() == [] and changes == [1]


def test_a_valid_secret_is_adopted_never_overwritten(tmp_path):
    api = MemoryApi()
    first = manager(api, tmp_path / "a").sync()
    api.calls.clear()
    assert manager(api, tmp_path / "b").sync() == first
    assert api.writes() == []


def test_losing_the_create_race_adopts_the_winners_secret(tmp_path):
    api = MemoryApi()
    winner = make_bundle(NAMES)

    def other_replica_first(verb):
        api.before_write = None
        api.post("/api/v1/namespaces/admission-host/secrets",
                 {"metadata": {"name": "admission-host-tls"}, "type": "kubernetes.io/tls",
                  "data": winner.secret_data()})

    api.before_write = other_replica_first
    assert manager(api, tmp_path).sync() == winner
    assert [c[0] for c in api.calls if c[1].endswith("secrets") or c[1] == SECRET].count("POST") == 2


def test_losing_the_renewal_race_adopts_the_winners_renewal(tmp_path):
    api = MemoryApi()
    m = manager(api, tmp_path, validity=60)
    # A Secret whose certificate is about to expire: both replicas want to renew it.
    expiring = make_bundle(NAMES, now=certs._now() - datetime.timedelta(seconds=55), validity=60)
    api.post("/api/v1/namespaces/admission-host/secrets",
             {"metadata": {"name": "admission-host-tls"}, "type": "kubernetes.io/tls",
              "data": expiring.secret_data()})
    winner = make_bundle(NAMES, expiring, validity=60)

    def other_replica_renews(verb):
        api.before_write = None
        secret = api.get(SECRET)
        secret["data"] = winner.secret_data()
        api.put(SECRET, secret)

    api.before_write = other_replica_renews
    assert m.sync() == winner
    assert winner.ca_key_pem == expiring.ca_key_pem  # renewal kept the CA


def test_renewal_keeps_other_keys_and_the_secret_type(tmp_path):
    api = MemoryApi()
    api.post("/api/v1/namespaces/admission-host/secrets",
             {"metadata": {"name": "admission-host-tls"}, "type": "Opaque", "data": {"note": "a2VlcA=="}})
    bundle = manager(api, tmp_path).sync()
    secret = api.objects[SECRET]
    assert secret["type"] == "Opaque" and secret["data"]["note"] == "a2VlcA=="
    assert Bundle.from_secret(secret) == bundle


def test_a_missing_webhook_configuration_does_not_stop_serving(tmp_path):
    api = MemoryApi(webhooks=None)
    m = manager(api, tmp_path)
    m.sync()
    assert m.ca_bundle_patched is False and m.not_ready() is None
    m2 = manager(api, tmp_path, webhook_configuration=None)
    m2.sync()
    assert m2.ca_bundle_patched is True


def test_only_stale_ca_bundles_are_patched(tmp_path):
    api = MemoryApi()
    bundle = make_bundle(NAMES)
    api.post("/api/v1/namespaces/admission-host/secrets",
             {"metadata": {"name": "admission-host-tls"}, "type": "kubernetes.io/tls", "data": bundle.secret_data()})
    config = api.objects[f"{certs.WEBHOOKS}/admission-host"]
    config["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(bundle.ca_pem).decode()
    patches = []
    original = api.patch
    api.patch = lambda path, body, content_type=None: (patches.append(body), original(path, body, content_type))[1]
    manager(api, tmp_path).sync()
    assert patches == [{"webhooks": [{"name": "b.example.com",
                                      "clientConfig": {"caBundle": base64.b64encode(bundle.ca_pem).decode()}}]}]


# -- the webhooks' matchConditions, kept in the same rounds -------------------------------------------
CONDITION = {"name": "not-a-daemonset-pod", "expression": "object == null"}
OLD = {"name": "not-created-on-a-node", "expression": "true"}


class VersionedApi(MemoryApi):
    """MemoryApi with a ``GET /version`` and JSON patches, as the matchConditions need."""

    def __init__(self, minor="37", **kw):
        super().__init__(**kw)
        self.objects["/version"] = {"major": "1", "minor": minor, "gitVersion": f"v1.{minor}.2"}

    def patch(self, path, body, content_type=None, **query):
        if content_type != "application/json-patch+json":
            return super().patch(path, body, content_type, **query)
        import jsonpatch

        self.calls.append(("PATCH", path))
        self.objects[path] = self._stamp(jsonpatch.apply_patch(self.objects[path], body))
        return copy.deepcopy(self.objects[path])


def conditions(api):
    return [h.get("matchConditions") for h in api.objects[f"{certs.WEBHOOKS}/admission-host"]["webhooks"]]


def test_match_conditions_are_set_where_they_differ_and_kept(tmp_path):
    api = VersionedApi()
    hooks = api.objects[f"{certs.WEBHOOKS}/admission-host"]["webhooks"]
    hooks[0]["matchConditions"], hooks[1]["matchConditions"] = [OLD], [CONDITION]
    m = manager(api, tmp_path)
    m.match_conditions = [CONDITION]
    m.sync()
    assert conditions(api) == [[CONDITION], [CONDITION]]
    patches = len(api.writes())
    m.sync()  # nothing differs: nothing written
    assert len(api.writes()) == patches
    # Reset by an apply of the manifests: put back in the next round.
    api.objects[f"{certs.WEBHOOKS}/admission-host"]["webhooks"][1]["matchConditions"] = [OLD]
    m.sync()
    assert conditions(api) == [[CONDITION], [CONDITION]]
    assert api.calls.count(("GET", "/version")) == 1


def test_no_condition_wanted_removes_them(tmp_path):
    api = VersionedApi()
    api.objects[f"{certs.WEBHOOKS}/admission-host"]["webhooks"][0]["matchConditions"] = [OLD]
    m = manager(api, tmp_path)
    m.match_conditions = []
    m.sync()
    assert conditions(api) == [None, None]


@pytest.mark.parametrize("minor,wanted", [("27", [CONDITION]), ("37", None)], ids=["before-1.28", "left-alone"])
def test_match_conditions_left_alone_before_1_28_or_when_not_wanted(tmp_path, minor, wanted):
    api = VersionedApi(minor)
    m = manager(api, tmp_path)
    m.match_conditions = wanted
    m.sync()
    m.sync()
    assert conditions(api) == [None, None]
    assert api.calls.count(("GET", "/version")) == (1 if wanted is not None else 0)


def test_a_refused_match_conditions_patch_does_not_stop_serving(tmp_path, caplog):
    class Refusing(VersionedApi):
        def patch(self, path, body, content_type=None, **query):
            if content_type == "application/json-patch+json":
                raise ApiError(422, "matchConditions: Invalid value")
            return super().patch(path, body, content_type, **query)

    m = manager(Refusing(), tmp_path)
    m.match_conditions = [CONDITION]
    bundle = m.sync()
    assert m.installed == bundle and m.not_ready() is None
    assert "matchConditions of MutatingWebhookConfiguration admission-host not set" in caplog.text


def test_errors_are_reported_by_readiness(tmp_path):
    class Forbidden(MemoryApi):
        def get(self, path, **query):
            raise ApiError(403, 'secrets "admission-host-tls" is forbidden')

    m = manager(Forbidden(), tmp_path)
    m.interval = 0.05
    m.start()
    try:
        import time

        deadline = time.monotonic() + 5
        while m.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        m.stop()
    assert "forbidden" in m.not_ready()


def test_prepare_writes_a_throwaway_pair_only_when_there_is_none(tmp_path):
    m = manager(MemoryApi(), tmp_path)
    m.prepare()
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(m.cert_file, m.key_file)
    bootstrap = open(m.cert_file, "rb").read()
    m.prepare()
    assert open(m.cert_file, "rb").read() == bootstrap
    m.sync()
    served = open(m.cert_file, "rb").read()
    m.prepare()  # a container restart keeps the certificate of the Secret it already has
    assert open(m.cert_file, "rb").read() == served != bootstrap
    issuer = x509.load_pem_x509_certificate(bootstrap).issuer.rfc4514_string()
    assert "bootstrap" in issuer


def test_private_keys_are_unencrypted_pkcs8(bundle):
    for pem in (bundle.key_pem, bundle.ca_key_pem):
        assert pem.startswith(b"-----BEGIN " + b"PRIVATE KEY-----")
        serialization.load_pem_private_key(pem, password=None)


# -- the command line -------------------------------------------------------------------------------
def test_serve_flags_fill_the_certificate_settings():
    args = build_parser().parse_args([
        "serve", "--cert-secret=s", "--cert-dir=/d", "--service-name=svc", "--webhook-configuration=w",
        "--cert-validity=90", "--cert-extra-san=127.0.0.1", "--cert-extra-san=a.example.com,b.example.com"])
    config = make_config(args)
    assert (config.cert_secret, config.cert_dir, config.service_name, config.webhook_configuration,
            config.cert_validity) == ("s", "/d", "svc", "w", 90.0)
    assert config.cert_extra_sans == ["127.0.0.1", "a.example.com", "b.example.com"]
    config.lease_namespace = "ns"
    m = CertManager.from_config(None, config)
    assert m.names == service_names("svc", "ns") + ["127.0.0.1", "a.example.com", "b.example.com"]
    assert (m.namespace, m.secret_name, m.cert_file) == ("ns", "s", "/d/tls.crt")


@pytest.mark.parametrize("extra", [["--tls-cert-file=c", "--tls-private-key-file=k"], ["--insecure-http"]])
def test_cert_secret_excludes_files_and_plain_http(extra):
    with pytest.raises(ConfigError):
        make_config(build_parser().parse_args(["serve", "--cert-secret=s", *extra]))
