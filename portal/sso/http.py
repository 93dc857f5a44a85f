"""Outbound HTTP to identity providers: pooled, capped, never following redirects."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

import httpx

from portal.sso.errors import (
    OAuthErrorResponse,
    ProviderBadResponse,
    ProviderHTTPError,
    ProviderTimeout,
    ProviderUnreachable,
    ResponseTooLarge,
    SSOError,
)

log = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts (seconds), response size cap (bytes) and TLS verification."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_bytes: int = 1_048_576
    verify: bool = True


class TraceRecorder(Protocol):
    """What the HTTP client needs from a trace (see `portal.sso.engine.Trace`)."""

    def record_request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        *,
        status: int | None,
        elapsed_ms: float,
        content_type: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record one outbound request and its outcome."""


@dataclass(frozen=True)
class HttpResponse:
    """A fully read response."""

    status: int
    headers: httpx.Headers
    content: bytes
    elapsed_ms: float

    @property
    def content_type(self) -> str:
        """Return the media type, lower case, without parameters."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _host(url: str) -> str:
    """Return scheme://host[:port] of a URL: paths and queries may carry codes or secrets."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid URL>"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


class _RedactHttpxLogs(logging.Filter):
    """Keep URLs (which may carry a code or secret) and response headers out of httpx's logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "httpx" and isinstance(record.args, tuple) and len(record.args) > 1:
            record.args = (record.args[0], _host(str(record.args[1])), *record.args[2:])
        elif isinstance(record.msg, str) and record.msg.startswith(
            ("receive_response_headers.complete", "send_request_headers")
        ):
            record.msg = record.msg.split(" ", 1)[0]
            record.args = ()
        return True


_log_filter = _RedactHttpxLogs()
for _name in ("httpx", "httpcore.http11", "httpcore.http2"):
    logging.getLogger(_name).addFilter(_log_filter)


class HttpClient:
    """A pooled httpx client bound to one set of settings."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.connect_timeout,
            ),
            follow_redirects=False,
            verify=settings.verify,
            trust_env=False,
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        trace: TraceRecorder | None = None,
    ) -> HttpResponse:
        """Send a request and read the whole (capped) response."""
        started = time.monotonic()
        host = _host(url)
        status: int | None = None
        content_type: str | None = None
        try:
            response = self._send(method, url, headers, body, host)
            status = response.status
            content_type = response.content_type
        except SSOError as exc:
            elapsed = (time.monotonic() - started) * 1000
            log.warning("SSO %s %s failed after %.0f ms: %s", method, host, elapsed, exc.code)
            if trace is not None:
                trace.record_request(
                    method, url, headers, body, status=status, elapsed_ms=elapsed, error=exc.code
                )
            raise
        log.info("SSO %s %s -> %s in %.0f ms", method, host, status, response.elapsed_ms)
        if trace is not None:
            trace.record_request(
                method,
                url,
                headers,
                body,
                status=status,
                elapsed_ms=response.elapsed_ms,
                content_type=content_type,
            )
        return response

    def _send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        host: str,
    ) -> HttpResponse:
        cap = self.settings.max_bytes
        # Header values may hold non-ASCII text a template produced: send them as UTF-8.
        raw_headers = [(name.encode("ascii"), value.encode("utf-8")) for name, value in headers]
        started = time.monotonic()
        try:
            with self._client.stream(
                method.upper(), url, headers=raw_headers, content=body
            ) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise ResponseTooLarge(f"{host} declared {declared} bytes (cap {cap})")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > cap:
                        raise ResponseTooLarge(f"{host} sent more than {cap} bytes")
                    chunks.append(chunk)
                return HttpResponse(
                    status=response.status_code,
                    headers=response.headers,
                    content=b"".join(chunks),
                    elapsed_ms=(time.monotonic() - started) * 1000,
                )
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"{host}: {type(exc).__name__}") from None
        except httpx.UnsupportedProtocol:
            raise ProviderUnreachable(f"{host}: unsupported URL scheme") from None
        except (httpx.InvalidURL, UnicodeEncodeError):
            raise ProviderUnreachable(f"{host}: invalid URL or header") from None
        except httpx.TransportError as exc:
            raise ProviderUnreachable(f"{host}: {type(exc).__name__}") from None
        except httpx.DecodingError:
            raise ProviderBadResponse(f"{host}: undecodable content encoding") from None


_clients: dict[HttpSettings, HttpClient] = {}
_clients_lock = threading.Lock()


def get_http_client(settings: HttpSettings | None = None) -> HttpClient:
    """Return this process's pooled client for the settings."""
    settings = settings or HttpSettings()
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            client = _clients[settings] = HttpClient(settings)
        return client


def _looks_like_html(resp: HttpResponse, text: str) -> bool:
    return resp.content_type in ("text/html", "application/xhtml+xml") or text.startswith("<")


def _oauth_error(doc: Any, status: int) -> OAuthErrorResponse | None:
    if isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"]:
        description = doc.get("error_description")
        return OAuthErrorResponse(
            doc["error"], description if isinstance(description, str) else None, status
        )
    return None


def _describe(resp: HttpResponse) -> str:
    return f"content-type {resp.content_type or 'none'}, {len(resp.content)} bytes"


def parse_json_or_form(resp: HttpResponse, *, allow_form: bool) -> dict[str, Any]:
    """Return the response's JSON object (or form fields when allowed), or raise a typed error."""
    ok = 200 <= resp.status < 300
    text = resp.content.decode("utf-8", errors="replace").lstrip("\ufeff").strip()

    doc: Any = None
    json_error: json.JSONDecodeError | None = None
    if text[:1] in ("{", "[") or resp.content_type.endswith("json"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            json_error = exc
        else:
            error = _oauth_error(doc, resp.status)
            if error is not None:
                raise error
    elif allow_form and resp.content_type in (FORM_TYPE, "text/plain") and "=" in text:
        try:
            doc = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
        except ValueError:
            doc = None
        else:
            error = _oauth_error(doc, resp.status)
            if error is not None:
                raise error

    if 300 <= resp.status < 400:
        raise ProviderHTTPError(resp.status, "redirect not followed")
    if not ok:
        raise ProviderHTTPError(resp.status, _describe(resp))
    if isinstance(doc, dict):
        return doc
    if not text:
        raise ProviderBadResponse(f"empty body ({_describe(resp)})")
    if _looks_like_html(resp, text):
        raise ProviderBadResponse(f"HTML page where JSON was expected ({_describe(resp)})")
    if doc is not None:
        raise ProviderBadResponse(
            f"JSON {type(doc).__name__} where an object was expected ({_describe(resp)})"
        )
    if json_error is not None:
        where = f"line {json_error.lineno} column {json_error.colno}"
        raise ProviderBadResponse(f"invalid JSON: {json_error.msg} at {where} ({_describe(resp)})")
    raise ProviderBadResponse(f"not JSON ({_describe(resp)})")
