"""The answers the providers build: HTML pages, JSON bodies, redirect URLs, the account page."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Response, request
from markupsafe import escape

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}
label{{display:block;margin-top:1rem}}input{{width:100%;padding:.4rem}}
.error{{color:#a00}}.hint{{color:#555;font-size:.9rem}}button{{margin-top:1rem}}</style>
</head>
<body>
{body}
</body>
</html>
"""


def html_page(title: str, body_html: str, status: int = 200) -> Response:
    """A minimal HTML page; ``body_html`` must already be escaped."""
    return Response(
        _PAGE.format(title=escape(title), body=body_html),
        status=status,
        mimetype="text/html",
    )


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    return Response(
        json.dumps(data), status=status, mimetype="application/json", headers=headers or {}
    )


def add_query(url: str, params: dict[str, str | None]) -> str:
    """``url`` with ``params`` (``None`` values skipped) appended to its query string."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


RETURN_PARAMS = ("returnUrl", "return", "return_to", "returnTo")


def account_page(brand: str) -> Response:
    """A stand-in "edit your profile" page with a link back to the return URL, if any."""
    target = next((request.args[k] for k in RETURN_PARAMS if request.args.get(k)), None)
    back = f'<p><a href="{escape(target)}">Back to the site</a></p>' if target else ""
    return html_page(
        f"{brand}: your profile",
        f"<h1>Your profile</h1><p>Edit your profile at {escape(brand)}.</p>{back}",
    )
