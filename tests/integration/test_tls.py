"""The TLS face: protocol versions, ALPN, keep-alive, concurrency, large bodies, slow readers."""

from __future__ import annotations

import base64
import io
import socket
import ssl
import threading
import time

import jsonpatch
import orjson
import pytest

from tests.integration.conftest import (decoded_patch, deletion_cost_op, labelled_pod, review,
                                        run_threads)
from tests.integration.slow_plugin import FAT

JSON = {"Content-Type": "application/json"}
TEST_PLUGIN = "tests.integration.slow_plugin"
# The longest one request may take while another client reads slowly, on a loaded machine; held up by
# that client, it would take seconds.
STALLED = 2.0


def _handshake(server, ctx: ssl.SSLContext, rcvbuf: int = 0) -> ssl.SSLSocket:
    raw = socket.socket()
    raw.settimeout(5)
    if rcvbuf:  # before connect(), so that the TCP window really is this small
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        raw.connect(("127.0.0.1", server.port))
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_1_is_refused(https_server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(https_server.ca.path))
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer TLS 1.0/1.1
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError) as info:
        _handshake(https_server, ctx).close()
    assert "PROTOCOL_VERSION" in str(info.value).upper() or "UNSUPPORTED" in str(info.value).upper()
    https_server.assert_serving()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_served(https_server, version):
    ctx = https_server.context(minimum_version=version, maximum_version=version)
    with _handshake(https_server, ctx) as s:
        assert s.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        cipher = s.cipher()[0]
        if version == ssl.TLSVersion.TLSv1_2:
            assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    conn = https_server.connection(minimum_version=version, maximum_version=version)
    try:
        assert decoded_patch(https_server.mutate(review(labelled_pod("1")), conn=conn)) == [deletion_cost_op("1")]
    finally:
        conn.close()


def test_tls_1_2_without_an_aead_suite_is_refused(https_server):
    ctx = https_server.context(maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE+AES128+SHA:@SECLEVEL=0")  # CBC suites only
    with pytest.raises(ssl.SSLError):
        _handshake(https_server, ctx).close()
    https_server.assert_serving()


def test_alpn_selects_http_1_1(https_server):
    ctx = https_server.context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with _handshake(https_server, ctx) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
    ctx = https_server.context()
    ctx.set_alpn_protocols(["h2"])  # the server never agrees to HTTP/2
    try:
        with _handshake(https_server, ctx) as s:
            assert s.selected_alpn_protocol() is None
    except ssl.SSLError as exc:  # or it refuses the handshake (no_application_protocol)
        assert "APPLICATION_PROTOCOL" in str(exc).upper()


def test_certificate_is_the_one_on_disk(https_server, ca):
    with _handshake(https_server, https_server.context()) as s:
        cert = s.getpeercert()
        assert dict(x[0] for x in cert["subject"])["commonName"] == "admission-host-shared"
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]


def test_keep_alive_many_requests_on_one_connection(https_server):
    conn = https_server.connection()
    try:
        first = None
        for i in range(300):
            cost = str(i - 150)
            answer = https_server.mutate(review(labelled_pod(cost), uid=f"ka-{i}"), conn=conn)
            assert answer["response"]["uid"] == f"ka-{i}"
            assert decoded_patch(answer) == [deletion_cost_op(cost)]
            first = first or conn.sock
            assert conn.sock is first, f"the connection was reopened at request {i}"
    finally:
        conn.close()


def test_pipelined_requests_on_one_connection(https_server):
    """Several requests written back to back before any answer is read come back in order."""
    ctx = https_server.context()
    with _handshake(https_server, ctx) as s:
        wire = b""
        for i in range(20):
            body = orjson.dumps(review(labelled_pod(str(i)), uid=f"p-{i}"))
            wire += (b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.sendall(wire)
        s.settimeout(10)
        reader = s.makefile("rb")
        for i in range(20):
            status, body = _read_answer(reader)
            assert status == 200
            answer = orjson.loads(body)
            assert answer["response"]["uid"] == f"p-{i}"
            assert decoded_patch(answer) == [deletion_cost_op(str(i))]


def _read_answer(reader) -> tuple:
    """One HTTP/1.1 answer with a Content-Length from a buffered stream: ``(status, body)``."""
    status = int(reader.readline().split()[1])
    length = 0
    while True:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, reader.read(length)


def test_concurrent_clients(https_server):
    threads, per_thread = 16, 50

    def client(t):
        conn = https_server.connection(timeout=30)
        try:
            for i in range(per_thread):
                cost = str(t * 1000 + i)
                answer = https_server.mutate(review(labelled_pod(cost), uid=f"c-{t}-{i}"), conn=conn, timeout=30)
                assert answer["response"]["uid"] == f"c-{t}-{i}"
                assert decoded_patch(answer) == [deletion_cost_op(cost)]
        finally:
            conn.close()

    assert run_threads(client, threads) == []


def test_concurrent_new_connections(https_server):
    """A TLS handshake per request, from many threads at once."""

    def client(t):
        for i in range(15):
            answer = https_server.mutate(review(labelled_pod(str(i)), uid=f"n-{t}-{i}"), timeout=30)
            assert answer["response"]["uid"] == f"n-{t}-{i}"

    assert run_threads(client, 12) == []
    https_server.assert_serving()


# -- large bodies (default 7 MiB limit, the test plugin that can answer with a large patch) -----------

@pytest.fixture(scope="module")
def big_server(ca, kubeconfig, tmp_path_factory):
    from tests.integration.conftest import CertFiles, ServerProcess

    tls = CertFiles(ca, tmp_path_factory.mktemp("tls-big"), "admission-host-big")
    server = ServerProcess(["--plugins", "pod_deletion_cost", "--kubeconfig", str(kubeconfig),
                            "--tls-cert-file", str(tls.cert_path), "--tls-private-key-file", str(tls.key_path),
                            "--threads", "4"],
                           ca=ca, launcher=True, extra_plugins=[TEST_PLUGIN])
    try:
        server.wait_ready()
        yield server
    finally:
        assert server.stop() == 0


def _big_pod(containers: int, labels: dict) -> dict:
    pod = labelled_pod("-5", name="big", labels=labels, containers=containers)
    for c in pod["spec"]["containers"]:
        c["env"] = [{"name": f"VAR_{j}", "value": f"value-{j}-" + "v" * 40} for j in range(20)]
        c["args"] = ["--flag=" + "a" * 200, "--other=" + "b" * 200]
    return pod


def test_five_megabyte_request(big_server):
    pod = _big_pod(2600, {"app": "big"})
    sent = review(pod, uid="big-request")
    body = orjson.dumps(sent)
    assert 5_000_000 < len(body) < 7 * 1024 * 1024
    conn = big_server.connection(timeout=60)
    try:
        for _ in range(3):  # and again on the same connection
            answer = big_server.mutate(sent, conn=conn, timeout=60)
            assert answer["response"]["uid"] == "big-request"
            assert decoded_patch(answer) == [deletion_cost_op("-5")]
    finally:
        conn.close()
    big_server.assert_serving()


def test_five_megabyte_request_and_answer(big_server):
    size = 5 * 1024 * 1024
    pod = _big_pod(400, {"app": "big", "fat": str(size)})
    sent = review(pod, uid="big-answer")
    conn = big_server.connection(timeout=60)
    try:
        status, _, body = big_server.request("POST", "/mutate", orjson.dumps(sent), JSON, conn=conn, timeout=60)
        assert status == 200
        assert len(body) > size
        answer = orjson.loads(body)
        patched = jsonpatch.apply_patch(pod, decoded_patch(answer))
        assert patched["metadata"]["annotations"][FAT] == "x" * size
        # The same connection still works after a large answer.
        assert decoded_patch(big_server.mutate(review(labelled_pod("2")), conn=conn)) == [deletion_cost_op("2")]
    finally:
        conn.close()


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
def test_slow_reader_of_a_large_answer_does_not_stall_others(big_server, close):
    """A client that does not read its large answer must not hold up anyone else, and gets all of it
    when it reads at last."""
    size = 16 * 1024 * 1024  # more than the kernel buffers of both ends hold
    body = orjson.dumps(review(labelled_pod("-5", labels={"fat": str(size)}), uid="slow-reader"))
    head = (b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n" % (len(body), b"Connection: close\r\n" if close else b""))
    slow = _handshake(big_server, big_server.context(), rcvbuf=65536)
    try:
        slow.sendall(head + body)
        time.sleep(0.5)  # the answer is built and stuck in the socket buffers
        worst = 0.0
        conn = big_server.connection()
        try:
            until = time.monotonic() + 4.0  # longer than any blocking flush on close
            while time.monotonic() < until:
                started = time.monotonic()
                big_server.mutate(review(labelled_pod("1")), conn=conn)
                worst = max(worst, time.monotonic() - started)
                fresh_started = time.monotonic()
                big_server.mutate(review(labelled_pod("1")))  # and a new connection each time
                worst = max(worst, time.monotonic() - fresh_started)
        finally:
            conn.close()
        # (held up by the slow reader, it would wait for it: past the 4 s above)
        assert worst < STALLED, f"a request took {worst:.2f}s while another client was slow to read"
        # The slow client still gets its whole answer when it reads.
        slow.settimeout(30)
        status, answer = _read_answer(slow.makefile("rb"))
        assert status == 200
        patch = orjson.loads(base64.b64decode(orjson.loads(answer)["response"]["patch"]))
        assert patch[-1]["value"][FAT] == "x" * size
    finally:
        slow.close()
    big_server.assert_serving()


def test_client_that_vanishes_while_its_large_answer_is_sent(big_server):
    size = 6 * 1024 * 1024
    body = orjson.dumps(review(labelled_pod("-5", labels={"fat": str(size)})))
    for _ in range(5):
        s = _handshake(big_server, big_server.context(), rcvbuf=65536)
        s.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.recv(100)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST with most of the answer unsent
    big_server.assert_serving()
    threading.Event().wait(0.2)
    big_server.assert_serving()


def test_slowly_read_large_answer_with_connection_close(big_server):
    """Closing after a large answer must wait for the reader without blocking everyone else, and
    must not cut the answer short."""
    size = 4 * 1024 * 1024
    body = orjson.dumps(review(labelled_pod("-5", labels={"fat": str(size)}), uid="trickle"))
    slow = _handshake(big_server, big_server.context(), rcvbuf=65536)
    slow.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    received = bytearray()
    done = threading.Event()

    def trickle():  # one TLS record (16 KB) every 20 ms: about 800 KB/s
        try:
            slow.settimeout(30)
            time.sleep(0.5)
            while True:
                chunk = slow.recv(65536)
                if not chunk:
                    break
                received.extend(chunk)
                time.sleep(0.02)
        finally:
            done.set()

    reader = threading.Thread(target=trickle, daemon=True)
    reader.start()
    worst = 0.0
    conn = big_server.connection()
    try:
        while not done.is_set():
            started = time.monotonic()
            big_server.mutate(review(labelled_pod("1")), conn=conn)
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.01)
    finally:
        conn.close()
        slow.close()
    # (held up by the reader, it would wait while the answer trickles out: about 5 s)
    assert worst < STALLED, f"a request took {worst:.2f}s while another client was reading slowly"
    status, answer = _read_answer(io.BytesIO(bytes(received)))
    assert status == 200
    assert len(answer) == int(bytes(received).split(b"Content-Length: ")[1].split(b"\r\n")[0])
    patch = orjson.loads(base64.b64decode(orjson.loads(answer)["response"]["patch"]))
    assert patch[-1]["value"][FAT] == "x" * size


def test_request_split_into_many_small_tls_records(https_server):
    """A request arriving a few bytes per TLS record is reassembled like any other."""
    body = orjson.dumps(review(labelled_pod("-5"), uid="records"))
    wire = (b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    with _handshake(https_server, https_server.context()) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(wire), 7):
            s.sendall(wire[i:i + 7])  # one record each
        s.settimeout(10)
        status, answer = _read_answer(s.makefile("rb"))
    assert status == 200
    assert orjson.loads(answer)["response"]["uid"] == "records"
    assert decoded_patch(orjson.loads(answer)) == [deletion_cost_op("-5")]
