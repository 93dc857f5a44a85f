"""A MemberClicks (MC Professional) look-alike: OAuth 2.0 code, then ``/api/v1/profile/me``.

Shaped as MemberClicks' help centre documents its API (*API Authorization*, *API
Resources*, *API Overview*; every host is ``<orgId>.memberclicks.net``):

1. ``GET /oauth/v1/authorize?response_type=code&client_id=&scope=read&state=&redirect_uri=``:
   the member signs in; back with ``code`` and ``state``.
2. ``POST /oauth/v1/token``, ``application/x-www-form-urlencoded``, the client ID and secret
   in ``Authorization: Basic`` ("HTTP Basic Access Authentication"), body
   ``grant_type=authorization_code&code=&scope=read&redirect_uri=``: ``access_token``,
   ``token_type: bearer``, ``refresh_token``, ``expires_in`` (an hour), ``scope``,
   ``serviceId``, ``userId`` (the profile ID) and ``jti``. Errors are OAuth's
   ``{"error", "error_description"}``.
3. ``GET /api/v1/profile/me`` with ``Authorization: Bearer`` and ``Accept: application/json``:
   the signed-in member's profile, whose attribute names are MemberClicks' display names in
   brackets: ``[Profile ID]``, ``[Contact Name]``, ``[Name | First]``, ``[Name | Last]``,
   ``[Email | Primary]``, ``[Username]``, ``[Member Type]``, ``[Member Status]``. The
   documentation lists no groups on a profile (groups are an administrator resource), so
   none are sent; a member's ``extra`` adds custom attributes (``"[My Attribute]"``).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, redirect, request
from markupsafe import escape

from portal.devidp.client import decode_basic_auth
from portal.devidp.faults import GENERIC_FAULTS
from portal.devidp.grants import Grant, Grants
from portal.devidp.members import Member
from portal.devidp.provider import BaseProvider, Route, endpoint_url
from portal.devidp.responses import add_query, html_page, json_response
from portal.devidp.signin import sign_in

BRAND = "MemberClicks"
#: The organization's service number, which MemberClicks puts in every token answer.
SERVICE_ID = 7340


class MemberClicksProvider(BaseProvider):
    """``/oauth/v1/authorize``, ``/oauth/v1/token`` (HTTP Basic) and ``/api/v1/profile/me``."""

    FAULT_KINDS = {
        "authorize": frozenset({"slow", "status", "html"}),
        "token": GENERIC_FAULTS,
        "profile_me": GENERIC_FAULTS,
    }
    FAULT_ALIASES = {"profile": "profile_me"}
    AUTHORIZE_PATH = "/oauth/v1/authorize"

    def __init__(self, **options: Any) -> None:
        """Take the options of :class:`BaseProvider`."""
        self.codes = Grants()
        self.tokens = Grants()
        super().__init__(**options)

    def create_app(self) -> Flask:
        """Build the provider's Flask app."""
        return self.build_app(__name__, ROUTES)

    authorize_url = endpoint_url("/oauth/v1/authorize", "The authorization request.")
    token_url = endpoint_url("/oauth/v1/token", "The access token request.")
    profile_url = endpoint_url("/api/v1/profile/me", "The signed-in member's profile.")

    def clear_grants(self) -> None:
        """Forget codes and tokens."""
        self.codes.clear()
        self.tokens.clear()

    def profile_for(self, member: Member) -> dict[str, Any]:
        """The ``/api/v1/profile/me`` document: bracketed attribute names."""
        name = " ".join(p for p in (member.given_name, member.family_name) if p) or None
        profile: dict[str, Any] = {
            "[Profile ID]": member.id,
            "[Contact Name]": name,
            "[Name | First]": member.given_name,
            "[Name | Last]": member.family_name,
            "[Email | Primary]": member.email,
            "[Username]": member.username,
            "[Member Type]": member.membership_type,
            "[Member Status]": member.membership_status,
        }
        profile.update(member.extra)
        return {k: v for k, v in profile.items() if v is not None}


def _error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def authorize(idp: MemberClicksProvider) -> Response:
    """The MemberClicks sign-in page; back to the client with ``code`` and ``state``."""
    args = dict(request.args.items())
    client_id, redirect_uri = args.get("client_id", ""), args.get("redirect_uri", "")
    if client_id != idp.client.client_id or redirect_uri not in idp.client.redirect_uris:
        return html_page(
            BRAND,
            f"<h1>Invalid client</h1><p>Client {escape(client_id)!s} or redirect "
            f"{escape(redirect_uri)!s} is not registered.</p>",
            400,
        )

    def back(**params: str | None) -> Response:
        return redirect(add_query(redirect_uri, {**params, "state": args.get("state")}))

    if args.get("response_type") != "code":
        return back(error="unsupported_response_type")
    if not set(args.get("scope", "").split()) <= {"read", "write"}:
        return back(error="invalid_scope")

    def signed_in(member: Member) -> Response:
        grant = Grant(member.username, time.time() + idp.code_ttl, client_id, redirect_uri)
        return back(code=idp.codes.issue("mccode", grant))

    return sign_in(idp, BRAND, cancelled=lambda: back(error="access_denied"), signed_in=signed_in)


def token(idp: MemberClicksProvider) -> Response:
    """Exchange a code for an access token; the client authenticates with HTTP Basic only."""
    basic = decode_basic_auth(request.headers.get("Authorization"))
    if basic is None or not idp.client.check_secret(*basic):
        return _error("unauthorized", "Full authentication is required.", 401)
    if request.mimetype != "application/x-www-form-urlencoded":
        return _error("invalid_request", "The body must be application/x-www-form-urlencoded.")
    form = request.form
    if form.get("grant_type") != "authorization_code":
        return _error("unsupported_grant_type", "Unsupported grant type.")
    grant, problem = idp.codes.redeem(form.get("code", ""))
    if grant is None:
        return _error("invalid_grant", f"Invalid authorization code: {problem}")
    if grant.client_id != basic[0] or form.get("redirect_uri") != grant.redirect_uri:
        return _error("invalid_grant", "Redirect URI mismatch.")
    member = idp.members.get(grant.username)
    if member is None:
        return _error("invalid_grant", "The member no longer exists.")
    expires = time.time() + idp.token_ttl
    access = idp.tokens.issue("mcat", Grant(member.username, expires, basic[0]))
    body = {
        "access_token": access,
        "token_type": "bearer",
        "refresh_token": idp.new_secret("mcrt"),
        "expires_in": idp.token_ttl - 1,
        "scope": form.get("scope") or "read",
        "serviceId": SERVICE_ID,
        "userId": member.id,
        "jti": idp.new_secret("jti"),
    }
    return json_response(body, headers={"Cache-Control": "no-store"})


def profile_me(idp: MemberClicksProvider) -> Response:
    """The profile of the member the bearer token was issued for."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    grant = idp.tokens.live(value.strip()) if scheme.lower() == "bearer" else None
    member = idp.members.get(grant.username) if grant else None
    if member is None:
        return _error("invalid_token", "Invalid access token.", 401)
    return json_response(idp.profile_for(member))


ROUTES = (
    Route("/oauth/v1/authorize", "authorize", authorize, ("GET", "POST")),
    Route("/oauth/v1/token", "token", token, ("POST",)),
    Route("/api/v1/profile/me", "profile_me", profile_me),
)
