"""Serving certificates re-read from disk while clients keep calling."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.conftest import CertFiles, decoded_patch, deletion_cost_op, labelled_pod, review

INTERVAL = "0.2"  # --cert-reload-interval


def peer_der(server) -> bytes:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with server.context().wrap_socket(raw, server_hostname="127.0.0.1") as s:
        return s.getpeercert(binary_form=True)


def wait_for_cert(server, der: bytes, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if peer_der(server) == der:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"the new certificate was not served within {timeout}s")


class Traffic:
    """Clients calling in a loop: one on a kept-alive connection, one with a new connection each time."""

    def __init__(self, server):
        self.server = server
        self.stop = threading.Event()
        self.failures = []
        self.counts = {"keep-alive": 0, "new": 0}
        self.changed = threading.Condition()
        self.threads = [threading.Thread(target=self._keep_alive, daemon=True),
                        threading.Thread(target=self._new_connections, daemon=True)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def flowing(self, calls: int = 5, timeout: float = 30.0) -> None:
        """Wait until both clients have made ``calls`` more successful calls: the traffic goes on
        at this point of the test, however slowly a loaded machine runs it."""
        with self.changed:
            target = {kind: count + calls for kind, count in self.counts.items()}
            done = self.changed.wait_for(
                lambda: self.failures or all(self.counts[k] >= target[k] for k in target), timeout)
        assert done and not self.failures, (self.counts, self.failures)

    def _call(self, kind, i, conn=None):
        try:
            answer = self.server.mutate(review(labelled_pod(str(i)), uid=f"{kind}-{i}"), conn=conn)
            assert answer["response"]["uid"] == f"{kind}-{i}"
            assert decoded_patch(answer) == [deletion_cost_op(str(i))]
            with self.changed:
                self.counts[kind] += 1
                self.changed.notify_all()
        except (AssertionError, OSError, http.client.HTTPException) as exc:
            with self.changed:
                self.failures.append((kind, i, repr(exc)))
                self.changed.notify_all()

    def _keep_alive(self):
        conn = self.server.connection()
        try:
            i = 0
            while not self.stop.is_set():
                self._call("keep-alive", i, conn)
                i += 1
        finally:
            conn.close()

    def _new_connections(self):
        i = 0
        while not self.stop.is_set():
            self._call("new", i)
            i += 1


def _assert_traffic_ok(traffic: Traffic):
    # (calls went on before the rotation and after it: each test waited for them with flowing())
    assert traffic.failures == [], traffic.failures


def _expiry_metric(server) -> float:
    _, _, body = server.request("GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("admission_host_certificate_expiry_timestamp_seconds "):
            return float(line.split()[1])
    raise AssertionError("no certificate expiry metric")


def _not_after(der: bytes) -> float:
    cert = x509.load_der_x509_certificate(der)
    return (getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after).timestamp()


def test_atomic_rotation(start_server, cert_files):
    server = start_server("--cert-reload-interval", INTERVAL, tls=cert_files)
    old = cert_files.der
    assert peer_der(server) == old
    with Traffic(server) as traffic:
        traffic.flowing()
        new = cert_files.replace_atomically("admission-host-2")
        assert new != old
        assert wait_for_cert(server, new) < 3.0
        traffic.flowing()
    _assert_traffic_ok(traffic)
    assert x509.load_der_x509_certificate(peer_der(server)).subject.rfc4514_string() == "CN=admission-host-2"
    assert _expiry_metric(server) == pytest.approx(_not_after(new))
    assert "serving certificate reloaded" in server.output()


def test_connections_opened_before_a_rotation_keep_working(start_server, cert_files):
    server = start_server("--cert-reload-interval", INTERVAL, tls=cert_files)
    conn = server.connection()
    try:
        server.mutate(review(labelled_pod("1")), conn=conn)
        old_sock = conn.sock
        assert old_sock.getpeercert(binary_form=True) == cert_files.der
        new = cert_files.replace_atomically("admission-host-2")
        wait_for_cert(server, new)
        for i in range(20):
            assert decoded_patch(server.mutate(review(labelled_pod(str(i))), conn=conn)) == [deletion_cost_op(str(i))]
        assert conn.sock is old_sock
    finally:
        conn.close()


def test_non_atomic_rotation_certificate_first_then_key(start_server, cert_files, ca):
    server = start_server("--cert-reload-interval", INTERVAL, tls=cert_files)
    old = cert_files.der
    cert_pem, key_pem, new = ca.issue("admission-host-3")
    with Traffic(server) as traffic:
        traffic.flowing()
        cert_files.cert_path.write_bytes(cert_pem)  # the key on disk no longer matches
        time.sleep(1.0)  # several reload intervals with a mismatched pair
        assert peer_der(server) == old
        traffic.flowing()
        cert_files.key_path.write_bytes(key_pem)
        assert wait_for_cert(server, new) < 3.0
        traffic.flowing()
    _assert_traffic_ok(traffic)
    out = server.output()
    assert "does not load yet" in out
    assert out.count("does not load yet") == 1  # said once for the same broken pair, not every interval


def test_non_atomic_rotation_key_first_then_certificate(start_server, cert_files, ca):
    server = start_server("--cert-reload-interval", INTERVAL, tls=cert_files)
    old = cert_files.der
    cert_pem, key_pem, new = ca.issue("admission-host-4")
    with Traffic(server) as traffic:
        traffic.flowing()
        cert_files.key_path.write_bytes(key_pem)
        time.sleep(0.8)
        assert peer_der(server) == old
        traffic.flowing()
        cert_files.cert_path.write_bytes(cert_pem)
        assert wait_for_cert(server, new) < 3.0
        traffic.flowing()
    _assert_traffic_ok(traffic)


def test_truncated_files_during_rotation_keep_the_old_certificate(start_server, cert_files, ca):
    server = start_server("--cert-reload-interval", INTERVAL, tls=cert_files)
    old = cert_files.der
    cert_pem, key_pem, new = ca.issue("admission-host-5")
    with Traffic(server) as traffic:
        cert_files.cert_path.write_bytes(cert_pem[: len(cert_pem) // 2])  # half written
        time.sleep(0.6)
        assert peer_der(server) == old
        cert_files.cert_path.write_bytes(b"")
        time.sleep(0.6)
        assert peer_der(server) == old
        os.unlink(cert_files.cert_path)  # briefly missing
        time.sleep(0.6)
        assert peer_der(server) == old
        traffic.flowing()
        cert_files.cert_path.write_bytes(cert_pem)
        cert_files.key_path.write_bytes(key_pem)
        assert wait_for_cert(server, new) < 3.0
        traffic.flowing()
    _assert_traffic_ok(traffic)


def test_secret_volume_rotation(start_server, ca, tmp_path):
    """The layout kubelet gives a Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>,
    and an update swaps the ..data symlink in one rename."""

    def write_version(name: str, common_name: str) -> bytes:
        version = tmp_path / name
        version.mkdir()
        cert, key, der = ca.issue(common_name)
        (version / "tls.crt").write_bytes(cert)
        (version / "tls.key").write_bytes(key)
        return der

    def point_data_at(name: str) -> None:
        tmp_link = tmp_path / "..data_tmp"
        os.symlink(name, tmp_link)
        os.replace(tmp_link, tmp_path / "..data")

    first = write_version("..2024_01_01_00_00_00.1", "admission-host-v1")
    point_data_at("..2024_01_01_00_00_00.1")
    for f in ("tls.crt", "tls.key"):
        os.symlink(Path("..data") / f, tmp_path / f)
    files = CertFiles.__new__(CertFiles)
    files.ca, files.directory = ca, tmp_path
    files.cert_path, files.key_path, files.der = tmp_path / "tls.crt", tmp_path / "tls.key", first
    server = start_server("--cert-reload-interval", INTERVAL, tls=files)
    assert peer_der(server) == first
    with Traffic(server) as traffic:
        traffic.flowing()
        second = write_version("..2024_02_01_00_00_00.2", "admission-host-v2")
        point_data_at("..2024_02_01_00_00_00.2")
        assert wait_for_cert(server, second) < 3.0
        traffic.flowing()
    _assert_traffic_ok(traffic)
