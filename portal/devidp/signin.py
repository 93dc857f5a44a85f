"""The sign-in step both providers' authorize endpoints share: the form and its answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Response, redirect, request
from markupsafe import escape

from portal.devidp.grants import Grant, Grants
from portal.devidp.members import Member
from portal.devidp.provider import BaseProvider
from portal.devidp.responses import add_query, html_page


def login_form(
    *,
    brand: str,
    action: str,
    username: str = "",
    error: str | None = None,
    hint: str | None = None,
    status: int = 200,
) -> Response:
    """The sign-in form: labelled username and password fields, Sign in and Cancel buttons."""
    parts = [f"<h1>{escape(brand)}</h1>", "<p>Sign in to continue.</p>"]
    if error:
        parts.append(f'<p class="error" role="alert">{escape(error)}</p>')
    parts.append(
        f'<form method="post" action="{escape(action)}">'
        '<label for="username">Username</label>'
        f'<input id="username" name="username" autocomplete="username" value="{escape(username)}"'
        " required autofocus>"
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password">'
        '<button type="submit" name="action" value="login">Sign in</button> '
        '<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button>'
        "</form>"
    )
    if hint:
        parts.append(f'<p class="hint">{escape(hint)}</p>')
    return html_page(f"{brand}: sign in", "\n".join(parts), status)


def sign_in(
    idp: BaseProvider,
    brand: str,
    *,
    cancelled: Callable[[], Response],
    signed_in: Callable[[Member], Response],
) -> Response:
    """Show the sign-in form (GET) or answer it: cancel, wrong password (the form, 401) or in."""
    if request.method == "GET":
        return login_form(
            brand=brand,
            action=request.full_path,
            username=request.args.get("login_hint", ""),
            hint=idp.login_hint,
        )
    if request.form.get("action") == "cancel":
        return cancelled()
    username = request.form.get("username", "")
    member = idp.members.check_password(username, request.form.get("password", ""))
    if member is None:
        return login_form(
            brand=brand,
            action=request.full_path,
            username=username,
            error="Wrong username or password.",
            hint=idp.login_hint,
            status=401,
        )
    return signed_in(member)


def code_sign_in(idp: Any, brand: str, codes: Grants, prefix: str, refused: str) -> Response:
    """A platform's sign-in page: back to the registered redirect with ``code`` and ``state``.

    ``idp`` has a ``client`` (id and redirect URIs) and a ``code_ttl``; an unregistered client
    or redirect gets a 400 page headed ``refused``.
    """
    args = dict(request.args.items())
    client_id, redirect_uri = args.get("client_id", ""), args.get("redirect_uri", "")
    if client_id != idp.client.client_id or redirect_uri not in idp.client.redirect_uris:
        return html_page(
            brand,
            f"<h1>{escape(refused)}</h1><p>Client {escape(client_id)!s} or redirect "
            f"{escape(redirect_uri)!s} is not registered.</p>",
            400,
        )

    def back(**params: str | None) -> Response:
        return redirect(add_query(redirect_uri, {**params, "state": args.get("state")}))

    def signed_in(member: Member) -> Response:
        grant = Grant(member.username, time.time() + idp.code_ttl, client_id, redirect_uri)
        return back(code=codes.issue(prefix, grant))

    return sign_in(idp, brand, cancelled=lambda: back(error="access_denied"), signed_in=signed_in)
