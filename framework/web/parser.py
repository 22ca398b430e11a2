"""The request header every API server sends, parsed in one pass; anything else by waitress itself.

waitress checks each header line with its own regular expression and splits the URI with
``urllib``: ~25-35 µs of an admission's CPU for seven header lines, as much as decoding the 7 KB
AdmissionReview. :class:`RequestParser` first tries one strict pattern for the whole header: an
HTTP/1.1 request line whose target is a plain path (no percent-escapes, no fragment) and an
optional query, then field lines of RFC 9110 tokens and visible values (no folding, no bare CR or
LF), no Transfer-Encoding. What matches is parsed to exactly what waitress's parser would have
made of it; anything the pattern does not match, waitress's parser parses (and rejects) as ever.
"""

from __future__ import annotations

import re

from waitress.buffers import OverflowableBuffer
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.receiver import FixedStreamReceiver

_NAME = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # a token
# A value starts and ends with a visible character (RFC 9110 5.5; waitress's HEADER_FIELD_RE too).
_VALUE = rb"[\x21-\x7e\x80-\xff](?:[\x21-\x7e\x80-\xff \t]*[\x21-\x7e\x80-\xff])?"
_HEADER = re.compile(
    # The request line: method, a path with no percent-escapes and an optional query, HTTP/1.1.
    rb"([A-Z]+) (/[!$&'()*+,\-./0-9:;=@A-Z_a-z~]*(?:\?[!$&'()*+,\-./0-9:;=?@A-Z_a-z~%]*)?) HTTP/1\.1\r\n"
    # Possessive whitespace (*+): a failing line costs time linear in its length.
    rb"((?:" + _NAME + rb":[ \t]*+(?:" + _VALUE + rb")?[ \t]*+\r\n)*)\r\n"
)
_FIELDS = re.compile(rb"(" + _NAME + rb"):[ \t]*+(" + _VALUE + rb")?[ \t]*+\r\n")
# waitress's own header pattern takes time quadratic in a run of whitespace that does not end
# the line well: 20,000 spaces and a NUL take it 4 s, on the thread that serves every request.
_BLANK_RUN = 32
_LONG_BLANK = re.compile(rb"[ \t]{%d}" % _BLANK_RUN)
# Header names as waitress keys them (CONTENT_LENGTH), for the few names clients send.
_KEYS: dict = {}


def _key(name: bytes) -> str:
    key = _KEYS.get(name)
    if key is None:
        key = name.upper().replace(b"-", b"_").decode("latin-1")
        if len(_KEYS) < 256:
            _KEYS[name] = key
    return key


class RequestParser(HTTPRequestParser):
    def parse_header(self, header_plus):
        match = _HEADER.fullmatch(header_plus)
        if match is None or not self._fast(match):
            if _LONG_BLANK.search(header_plus):
                raise ParsingError(f"header with a run of {_BLANK_RUN} or more spaces or tabs")
            # waitress's own parse, starting from nothing: nothing of the attempt remains.
            self.headers = {}
            super().parse_header(header_plus)

    def _fast(self, match) -> bool:
        command, target, fields = match.groups()
        headers = self.headers
        for name, value in _FIELDS.findall(fields):
            if b"_" in name:
                continue  # waitress drops these (they would collide with a dash's key)
            key = _key(name)
            value = value.decode("latin-1")
            if key in headers:
                headers[key] += ", " + value
            else:
                headers[key] = value
        if "TRANSFER_ENCODING" in headers:
            return False
        length = headers.get("CONTENT_LENGTH", "0")
        if not (length.isascii() and length.isdigit()):
            return False
        self.first_line = b"%s %s HTTP/1.1" % (command, target)
        self.command = command.decode("latin-1")
        self.version = "1.1"
        self.request_uri = target.decode("latin-1")
        self.path, _, self.query = self.request_uri.partition("?")
        self.proxy_scheme = self.proxy_netloc = self.fragment = ""
        self.url_scheme = self.adj.url_scheme
        self.connection_close = headers.get("CONNECTION", "").lower() == "close"
        self.expect_continue = headers.get("EXPECT", "").lower() == "100-continue"
        self.content_length = int(length)
        if self.content_length > 0:
            self.body_rcv = FixedStreamReceiver(self.content_length, OverflowableBuffer(self.adj.inbuf_overflow))
        return True
