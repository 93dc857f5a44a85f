"""Request size limit: an oversized body is refused with a readable 413, before it is read."""

from __future__ import annotations

import io

from flask.testing import EnvironBuilder
from werkzeug.test import run_wsgi_app
from werkzeug.wrappers import Response

from portal.config import DEFAULT_MAX_CONTENT_LENGTH, load_config


class CountingStream(io.RawIOBase):
    """A request body of ``size`` bytes that counts how many the app reads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = b"a" * n
        self.read_bytes += n
        return n


TWENTY_MB = 20 * 1024 * 1024
FORM = "application/x-www-form-urlencoded"
UPLOAD = "multipart/form-data; boundary=never-comes"


def post_stream(app, body: CountingStream, *, length: int | None, content_type: str = FORM):
    """POST ``body`` to /login as an anonymous form, with or without a Content-Length."""
    environ = EnvironBuilder(
        app, path="/login", method="POST", content_type=content_type
    ).get_environ()
    environ["wsgi.input"] = body
    if length is None:
        # As servers pass a chunked body: no length, the stream ends by itself.
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(length)
    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    return Response(app_iter, status, headers)


def test_an_anonymous_20_mb_post_gets_413_unread(app):
    """Attack: an anonymous 20 MB form POST is refused from its Content-Length, body unread."""
    body = CountingStream(TWENTY_MB)
    response = post_stream(app, body, length=TWENTY_MB)
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "larger than this site accepts (at most 2 MB)" in page
    assert body.read_bytes == 0


def test_a_body_without_length_is_cut_at_the_limit(app):
    """A streamed upload without Content-Length is read only up to the limit, then refused."""
    body = CountingStream(TWENTY_MB)
    response = post_stream(app, body, length=None, content_type=UPLOAD)
    assert response.status_code == 413
    assert body.read_bytes <= DEFAULT_MAX_CONTENT_LENGTH + 64 * 1024


def test_the_limit_is_a_setting(tmp_path):
    """PORTAL_MAX_CONTENT_LENGTH sets it; the default leaves room for a 1 MB SSO import."""
    assert load_config(str(tmp_path), {})["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024
    config = load_config(str(tmp_path), {"PORTAL_MAX_CONTENT_LENGTH": "4096"})
    assert config["MAX_CONTENT_LENGTH"] == 4096
