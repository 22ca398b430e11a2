"""The one-pass header parser makes of a request exactly what waitress's parser makes of it."""

import pytest
from waitress.adjustments import Adjustments
from waitress.parser import HTTPRequestParser

from framework.web.parser import RequestParser

ADJ = Adjustments(max_request_body_size=1 << 20)
BODY = b'{"kind":"AdmissionReview"}'
API_SERVER = (b"POST /mutate?timeout=10s HTTP/1.1\r\nHost: admission-host.admission-host.svc:443\r\n"
              b"User-Agent: kube-apiserver-admission\r\nContent-Length: 26\r\nAccept: application/json, */*\r\n"
              b"Content-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n" + BODY)

REQUESTS = {
    "api server": API_SERVER,
    "probe": b"GET /readyz HTTP/1.1\r\nHost: 10.0.0.1:8443\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n\r\n",
    "no headers": b"GET /healthz HTTP/1.1\r\n\r\n",
    "empty query": b"GET /metrics? HTTP/1.1\r\nHost: x\r\n\r\n",
    "query with escapes": b"POST /mutate?timeout=10s&x=%20y HTTP/1.1\r\nContent-Length: 26\r\n\r\n" + BODY,
    "escaped path": b"GET /plug%69ns HTTP/1.1\r\nHost: x\r\n\r\n",
    "fragment": b"GET /readyz#x HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute uri": b"GET http://x/readyz HTTP/1.1\r\nHost: x\r\n\r\n",
    "http/1.0": b"GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "repeated header": b"GET / HTTP/1.1\r\nAccept: a\r\nX-A: 1\r\naccept: b\r\n\r\n",
    "blanks around values": b"GET / HTTP/1.1\r\nA:\t v  w \t\r\nB:\r\nC:   \r\n\r\n",
    "obs-text": b"GET / HTTP/1.1\r\nA: caf\xe9\r\n\r\n",
    "underscore name dropped": b"GET / HTTP/1.1\r\nX_Forwarded_For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n",
    "expect": b"POST /mutate HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 26\r\n\r\n" + BODY,
    "connection close": b"POST /mutate HTTP/1.1\r\nConnection: Close\r\nContent-Length: 26\r\n\r\n" + BODY,
    "chunked": b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n" + BODY + b"\r\n0\r\n\r\n",
    "gzip transfer": b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    "folded header": b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
    "bare LF in value": b"GET / HTTP/1.1\r\nA: b\nc\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nA : b\r\n\r\n",
    "control character": b"GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n",
    "lower-case method": b"get / HTTP/1.1\r\n\r\n",
    "bad content-length": b"POST /mutate HTTP/1.1\r\nContent-Length: 2x\r\n\r\n",
    "superscript content-length": b"POST /mutate HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",
    "two content-lengths": b"POST /mutate HTTP/1.1\r\nContent-Length: 26\r\nContent-Length: 26\r\n\r\n" + BODY,
    "too large": b"POST /mutate HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
}

ATTRIBUTES = ("completed", "empty", "first_line", "headers", "command", "request_uri", "version", "path",
              "query", "fragment", "proxy_scheme", "proxy_netloc", "url_scheme", "connection_close",
              "expect_continue", "chunked", "content_length", "headers_finished")


def parse(cls, data: bytes):
    request = cls(ADJ)
    while data and not request.completed:
        data = data[request.received(data):]
    return request


def outcome(request):
    error = request.error and (type(request.error).__name__, request.error.body)
    return ({name: getattr(request, name, None) for name in ATTRIBUTES}, error,
            request.get_body_stream().read())


@pytest.mark.parametrize("data", REQUESTS.values(), ids=REQUESTS.keys())
def test_the_same_as_waitress(data):
    assert outcome(parse(RequestParser, data)) == outcome(parse(HTTPRequestParser, data))


@pytest.mark.parametrize("name", ["api server", "probe", "empty query", "repeated header", "obs-text",
                                  "blanks around values", "expect", "connection close"])
def test_the_common_requests_take_the_one_pass(name, monkeypatch):
    """The corpus above means something only if these really go the fast way."""
    monkeypatch.setattr(HTTPRequestParser, "parse_header", lambda *a: pytest.fail("waitress's parse"))
    assert parse(RequestParser, REQUESTS[name]).completed


@pytest.mark.parametrize("run", [b" " * 200_000, b"\t " * 100_000])
def test_a_long_run_of_blanks_is_refused_at_once(run, monkeypatch):
    """waitress's own header pattern would take minutes over this line (time quadratic in the run)."""
    monkeypatch.setattr(HTTPRequestParser, "parse_header", lambda *a: pytest.fail("waitress's parse"))
    request = parse(RequestParser, b"GET / HTTP/1.1\r\nA: " + run + b"\x00\r\n\r\n")
    assert request.completed and request.error.body == "header with a run of 32 or more spaces or tabs"

