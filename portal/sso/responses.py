"""Reading a provider's response: its JSON or form document, its OAuth error, its cache lifetime."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from portal.sso.errors import OAuthErrorResponse, ProviderBadResponse, ProviderHTTPError
from portal.sso.http import HttpResponse

#: The media type of a form body: token requests default to it, token responses may use it.
FORM_TYPE = "application/x-www-form-urlencoded"

#: How long a key set or discovery document is kept without a Cache-Control max-age.
DEFAULT_TTL = 3600.0
#: Bounds on a provider's max-age: a refetch at most every 5 minutes, at least once a day.
MIN_TTL = 300.0
MAX_TTL = 86_400.0
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def cache_ttl(cache_control: str | None, *, default: float = DEFAULT_TTL) -> float:
    """Return how long to keep a document: its ``max-age`` bounded to [MIN_TTL, MAX_TTL].

    ``no-store``/``no-cache`` and ``max-age=0`` keep it for MIN_TTL: a provider cannot make
    Portal fetch on every sign-in. Without a max-age, ``default``.
    """
    value = (cache_control or "").lower()
    match = _MAX_AGE.search(value)
    if match:
        seconds = float(match.group(1))
    elif "no-store" in value or "no-cache" in value:
        seconds = 0.0
    else:
        seconds = default
    return max(MIN_TTL, min(MAX_TTL, seconds))


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
