"""Response headers: Portal's reading gives what http.client's own parser gives, in any shape."""

from __future__ import annotations

import http.client
import io
import json

import pytest

from portal.sso.http import _parse_headers
from tests.support.servers import read_request_head

SHAPES = {
    "plain": b"Content-Type: application/json\r\nContent-Length: 2\r\n"
    b"Cache-Control: no-store\r\n\r\n",
    "repeated": b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nWarning: 1\r\nwarning: 2\r\n\r\n",
    "spacing": b"X-A:tight\r\nX-B:   spaced   \r\nX-C:\t tabbed\r\nX-Empty:\r\n\r\n",
    "bare line ends": b"Content-Type: text/plain\nX-A: 1\n\n",
    "folded": b"X-Long: first part\r\n  second part\r\nX-After: 1\r\n\r\n",
    "space before colon": b"X-Odd : value\r\nX-B: 1\r\n\r\n",
    "no colon": b"X-A: 1\r\nnot a header line\r\nX-B: 2\r\n\r\n",
    "latin-1": "X-Name: Jos\u00e9 M\u00fcller\r\n\r\n".encode("iso-8859-1"),
    "no blank line": b"X-A: 1\r\nX-B: 2\r\n",
    "nothing": b"\r\n",
}


@pytest.mark.parametrize("raw", SHAPES.values(), ids=SHAPES.keys())
def test_headers_read_as_http_client_reads_them(raw: bytes):
    """Every name, value and order, and what is left to read after them, are http.client's."""
    ours, theirs = io.BytesIO(raw + b"BODY"), io.BytesIO(raw + b"BODY")
    mine, expected = _parse_headers(ours), http.client.parse_headers(theirs)
    assert isinstance(mine, http.client.HTTPMessage)
    assert mine.items() == expected.items()
    assert mine.get_all("warning") == expected.get_all("warning")
    assert ours.read() == theirs.read()


def test_a_header_line_past_the_limit_is_refused_as_http_client_refuses_it():
    with pytest.raises(http.client.LineTooLong):
        _parse_headers(io.BytesIO(b"X-Big: " + b"a" * 70000 + b"\r\n\r\n"))


def test_more_than_a_hundred_header_lines_are_refused_as_http_client_refuses_them():
    raw = b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        _parse_headers(io.BytesIO(raw))


def test_a_provider_answer_in_every_framing_is_read_whole(http, raw_server):
    """100 Continue first, a folded header, a chunked body, then a keep-alive answer with a
    length: each body is read exactly, and the connection serves the next request."""
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Folded: a\r\n b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b'7\r\n{"a": 1\r\n1\r\n}\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{"b": 2}',
    ]

    def serve(conn):
        for answer in answers:
            read_request_head(conn)
            conn.sendall(answer)

    url = raw_server(serve)
    first = http.request("GET", url + "/first")
    second = http.request("GET", url + "/second")
    assert json.loads(first.content) == {"a": 1} and json.loads(second.content) == {"b": 2}
    assert first.headers["x-folded"].split() == ["a", "b"]
