"""AdmissionReview over real HTTPS to ``admission-host serve``: good calls, bad calls, bad bytes."""

from __future__ import annotations

import re
import select
import socket
import ssl
import subprocess
import sys
import time

import orjson
import pytest

from tests.integration.conftest import (DELETION_COST_ANNOTATION, REPO, decoded_patch, deletion_cost_op,
                                        free_port, labelled_pod, review)

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_matching_pod_is_patched_in_the_request_version(https_server, api_version):
    sent = review(labelled_pod("-5"), api_version=api_version, uid="5d3c3a6e-8f64-4e4a-9d0f-1b2c3d4e5f60")
    answer = https_server.mutate(sent)
    assert answer["apiVersion"] == api_version
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "5d3c3a6e-8f64-4e4a-9d0f-1b2c3d4e5f60"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert decoded_patch(answer) == [deletion_cost_op("-5")]


def test_existing_annotations_get_one_added_key(https_server):
    pod = labelled_pod("12")
    pod["metadata"]["annotations"] = {"team": "web"}
    answer = https_server.mutate(review(pod))
    assert decoded_patch(answer) == [{"op": "add", "path": "/metadata/annotations/controller.kubernetes.io~1pod-deletion-cost",
                                      "value": "12"}]


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_unmatched_pod_gets_no_patch(https_server, api_version):
    answer = https_server.mutate(review(labelled_pod(None), api_version=api_version, uid="u-1"))
    assert answer["apiVersion"] == api_version
    response = answer["response"]
    assert response == {"uid": "u-1", "allowed": True}


def test_pod_that_already_has_the_annotation_is_left_alone(https_server):
    pod = labelled_pod("-5")
    pod["metadata"]["annotations"] = {DELETION_COST_ANNOTATION: "7"}
    assert "patch" not in https_server.mutate(review(pod))["response"]


def test_invalid_label_value_is_admitted_with_a_warning(https_server):
    answer = https_server.mutate(review(labelled_pod("lots")))
    response = answer["response"]
    assert response["allowed"] is True and "patch" not in response
    assert any("not an integer" in w for w in response["warnings"])


def test_health_metrics_and_plugins_endpoints(https_server):
    status, _, body = https_server.request("GET", "/healthz")
    assert (status, body) == (200, b"ok")
    status, _, body = https_server.request("GET", "/readyz")
    assert (status, body) == (200, b"ok")
    status, headers, body = https_server.request("GET", "/metrics")
    assert status == 200 and b"admission_host_admissions" in body
    assert b"admission_host_certificate_expiry_timestamp_seconds" in body
    status, _, body = https_server.request("GET", "/plugins")
    assert status == 200
    assert [m["name"] for m in orjson.loads(body)["mutators"]] == ["pod-deletion-cost"]


def _handshakes(server) -> float:
    _, _, body = server.request("GET", "/metrics")  # a connection of its own: counted before it answers
    return float(re.search(rb"^admission_host_tls_handshakes_total (\S+)$", body, re.M).group(1))


def test_tls_handshakes_count_connections_not_requests(https_server):
    before = _handshakes(https_server)
    conn = https_server.connection()
    try:
        for uid in ("k-1", "k-2", "k-3"):  # one keep-alive connection, three admissions
            https_server.mutate(review(labelled_pod("-5"), uid=uid), conn=conn)
    finally:
        conn.close()
    https_server.mutate(review(labelled_pod("-5"), uid="k-4"))  # a connection of its own
    assert _handshakes(https_server) - before == 3  # the keep-alive one, k-4's, this /metrics call's


# -- malformed calls --------------------------------------------------------------------------------

def _bad_calls():
    good = orjson.dumps(review(labelled_pod("-5")))
    no_uid = review(labelled_pod("-5"))
    del no_uid["request"]["uid"]
    return [
        ("wrong content type", "POST", "/mutate", good, {"Content-Type": "text/plain"}, 415, b"application/json"),
        ("no content type", "POST", "/mutate", good, {}, 415, b"application/json"),
        ("empty body", "POST", "/mutate", b"", JSON, 400, b"empty body"),
        ("blank body", "POST", "/mutate", b"  \n", JSON, 400, b"empty body"),
        ("invalid JSON", "POST", "/mutate", b'{"apiVersion": ', JSON, 400, b"not valid JSON"),
        ("not UTF-8", "POST", "/mutate", b'{"a": "\xff\xfe"}', JSON, 400, b"not valid JSON"),
        ("JSON array", "POST", "/mutate", b"[1, 2, 3]", JSON, 400, b"got a JSON list"),
        ("JSON string", "POST", "/mutate", b'"AdmissionReview"', JSON, 400, b"got a JSON str"),
        ("missing uid", "POST", "/mutate", orjson.dumps(no_uid), JSON, 400, b"request.uid"),
        ("wrong kind", "POST", "/mutate", b'{"kind": "Pod", "apiVersion": "v1"}', JSON, 400, b"kind must be"),
        ("object is a list", "POST", "/mutate",
         good.replace(b'"object":{', b'"object":[{').replace(b',"oldObject"', b'],"oldObject"'), JSON, 400,
         b"request.object"),
        ("unknown path", "POST", "/validate", good, JSON, 404, b""),
        ("unknown GET path", "GET", "/nothing/here", None, {}, 404, b""),
        ("GET on /mutate", "GET", "/mutate", None, {}, 405, b""),
    ]


@pytest.mark.parametrize("name,method,path,body,headers,status,message", _bad_calls(), ids=[c[0] for c in _bad_calls()])
def test_malformed_call_gets_a_4xx_that_says_why(https_server, name, method, path, body, headers, status, message):
    got, _, text = https_server.request(method, path, body, headers)
    assert got == status, text
    assert message in text
    https_server.assert_serving()


def _post_reading_concurrently(server, head: bytes, body: bytes) -> bytes:
    """Send a request while reading the answer, as the API server's HTTP client does.

    A server refuses an over-limit body after the headers and closes; a client that only reads
    once its whole body is written would see the close instead of the answer. One thread does
    both, in turns (an SSLSocket must not be read and written by two threads at once).
    """
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s = server.context().wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        s.sendall(head)
        s.setblocking(False)
        unsent, data, deadline = memoryview(body), b"", time.monotonic() + 10
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            readable, writable, _ = select.select([s], [s] if unsent else [], [], 0.5)
            try:
                if readable or s.pending():
                    chunk = s.recv(65536)
                    if not chunk:
                        break  # closed without (more of) an answer
                    data += chunk
                if writable and unsent:
                    unsent = unsent[s.send(unsent[:65536]):]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except OSError:
                unsent = unsent[:0]  # the server stopped reading: only its answer is left to read
        assert data, "no answer"
        return data
    finally:
        s.close()


@pytest.mark.parametrize("size", [1024 * 1024 + 1, 3 * 1024 * 1024])
def test_body_over_the_limit_is_413(https_server, size):
    head = (b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % size)
    answer = _post_reading_concurrently(https_server, head, b"x" * size)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    https_server.assert_serving()


def _refused_body_then_more(server, connect) -> None:
    """After a 413 the server shuts its side and drops what the client still sends (a lingering
    close): a plain close would reset the connection, and a reset can destroy an answer still on
    its way. The client sees the answer, then the end, and may finish sending without error."""
    head = (b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (8 * 1024 * 1024))  # over both servers' limits
    s = connect(socket.create_connection(("127.0.0.1", server.port), timeout=10))
    try:
        s.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < int(
                re.search(rb"Content-Length: (\d+)", answer, re.I).group(1)):
            answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer, answer[:200]
        time.sleep(0.2)  # a server that closed outright has reset the connection by now
        for _ in range(16):  # 1 MiB more of the body: read and dropped, no reset
            s.sendall(b"x" * 65536)
        assert s.recv(65536) == b""  # then the end: the server shut its side after the answer
    finally:
        s.close()
    server.assert_serving()


def test_a_refused_body_may_still_arrive_after_the_answer(https_server):
    _refused_body_then_more(https_server, lambda raw: https_server.context().wrap_socket(
        raw, server_hostname="127.0.0.1"))


def test_a_refused_body_may_still_arrive_after_the_answer_over_plain_http(start_server):
    _refused_body_then_more(start_server(), lambda raw: raw)


def test_body_at_the_limit_is_read(https_server):
    """Exactly at the limit the body is parsed (and here rejected for what it says, not its size)."""
    pod = labelled_pod("-5")
    pod["metadata"]["annotations"] = {"filler": ""}
    body = orjson.dumps(review(pod))
    pod["metadata"]["annotations"]["filler"] = "x" * (1024 * 1024 - len(body))
    body = orjson.dumps(review(pod))
    assert len(body) == 1024 * 1024
    answer = https_server.mutate(review(pod))
    assert decoded_patch(answer) == [{"op": "add", "path": "/metadata/annotations/controller.kubernetes.io~1pod-deletion-cost",
                                      "value": "-5"}]


def test_body_over_the_limit_without_content_length_is_413(https_server):
    """A chunked body has no Content-Length; the limit still holds."""
    head = (b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 20 + b"0\r\n\r\n"  # 1.25 MiB > 1 MiB
    answer = _post_reading_concurrently(https_server, head, body)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    https_server.assert_serving()


def test_server_survives_every_malformed_call_then_answers(https_server):
    for _, method, path, body, headers, status, _ in _bad_calls():
        conn = https_server.connection()
        try:
            # On one kept-alive connection: the bad call, then a good one.
            got, _, _ = https_server.request(method, path, body, headers, conn=conn)
            assert got == status
            answer = https_server.mutate(review(labelled_pod("3")), conn=conn)
            assert decoded_patch(answer) == [deletion_cost_op("3")]
        finally:
            conn.close()
    status, _, metrics = https_server.request("GET", "/metrics")
    assert b'admission_host_bad_requests_total{status="400"}' in metrics
    assert b'outcome="error"' not in metrics
    https_server.assert_serving()


# -- bytes that are not TLS, or not a whole handshake --------------------------------------------------

def _raw(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def _read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends before it closes; a hang fails (socket timeout)."""
    data = b""
    while True:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_garbage_instead_of_a_client_hello(https_server):
    with _raw(https_server) as s:
        s.sendall(b"\x00\x01garbage that is not a TLS record\r\n\r\n" * 20)
        data = _read_until_closed(s)
        assert not data or data[0] == 0x15  # nothing, or a TLS alert record, then the close
    https_server.assert_serving()


def test_plain_http_to_the_https_port(https_server):
    with _raw(https_server) as s:
        s.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2\r\n\r\n{}")
        data = _read_until_closed(s)
        assert not data.startswith(b"HTTP/1.1 200")
    https_server.assert_serving()


def test_client_that_closes_during_the_handshake(https_server):
    ctx = https_server.context()
    for cut in (5, 40, None):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        with _raw(https_server) as s:
            s.sendall(hello[:cut] if cut else hello)
            if cut is None:
                s.recv(1)  # the server's first flight has started: now hang up mid-handshake
    # A connection that stays silent after the TCP handshake does not block anyone either.
    with _raw(https_server):
        https_server.assert_serving()
    https_server.assert_serving()


def test_client_that_resets_mid_request(https_server):
    ctx = https_server.context()
    with socket.create_connection(("127.0.0.1", https_server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n\r\n{\"apiVersion\":")
            time.sleep(0.05)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    https_server.assert_serving()


def test_many_broken_connections_then_the_server_still_answers(https_server):
    for i in range(50):
        with _raw(https_server) as s:
            s.sendall(b"\x16\x03\x01\x00\x05" + bytes([i]) * 5)
    https_server.assert_serving()
    status, _, metrics = https_server.request("GET", "/metrics")
    assert status == 200


# -- plain HTTP ------------------------------------------------------------------------------------------

def test_insecure_http_serves_plain_http(start_server):
    server = start_server()  # no certificate: --insecure-http
    assert server.scheme == "http"
    answer = server.mutate(review(labelled_pod("-5"), uid="plain"))
    assert answer["response"]["uid"] == "plain"
    assert decoded_patch(answer) == [deletion_cost_op("-5")]
    status, _, body = server.request("POST", "/mutate", b"[]", JSON)
    assert status == 400
    assert server.stop() == 0


def test_serve_without_a_certificate_is_a_clear_startup_error(kubeconfig, tmp_path):
    base = [sys.executable, "-m", "framework.cli", "serve", "--plugins", "pod_deletion_cost",
            "--kubeconfig", str(kubeconfig), "--bind-address", "127.0.0.1", "--port", str(free_port()),
            "--no-leader-elect"]
    done = subprocess.run(base, capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert done.returncode == 2
    assert "--tls-cert-file and --tls-private-key-file are required" in done.stderr
    missing = [*base, "--tls-cert-file", str(tmp_path / "tls.crt"), "--tls-private-key-file", str(tmp_path / "tls.key")]
    done = subprocess.run(missing, capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert done.returncode == 2 and "tls.crt" in done.stderr
    (tmp_path / "tls.crt").write_text("not a certificate")
    (tmp_path / "tls.key").write_text("not a key")
    done = subprocess.run(missing, capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert done.returncode == 2 and "admission-host: error:" in done.stderr
