"""An association-management-system (AMS) style OAuth provider with non-standard quirks.

Quirks, on purpose: the token endpoint takes only a JSON body and answers
``{"result": {"AccessKey": ..., "Expires": 3600}}``; the profile API wants the token in an
``X-Api-Key`` header and answers a nested ``{"Member": {...}}`` with arrays; the authorize
redirect carries ``code`` and ``state`` but no ``iss``; logout takes ``returnUrl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, redirect, request
from markupsafe import escape

from portal.devidp.faults import GENERIC_FAULTS
from portal.devidp.members import Member
from portal.devidp.provider import BaseProvider, Route, endpoint_url
from portal.devidp.responses import account_page, add_query, html_page, json_response
from portal.devidp.signin import sign_in

BRAND = "Member Center"


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    username: str
    expires_at: float
    used: bool = False


@dataclass
class _Key:
    username: str
    expires_at: float


class AMSProvider(BaseProvider):
    """A member-center provider: ``/oauth/authorize``, ``/oauth/token`` (JSON only),
    ``/api/member`` (``X-Api-Key``) and ``/logout?returnUrl=``."""

    FAULT_KINDS = {
        "authorize": frozenset({"slow", "status", "html", "error", "wrong_state"}),
        "token": GENERIC_FAULTS | {"no_token"},
        "member": GENERIC_FAULTS,
        "logout": frozenset({"slow", "status", "html"}),
    }
    FAULT_ALIASES = {"profile": "member"}
    AUTHORIZE_PATH = "/oauth/authorize"

    def __init__(self, **options: Any) -> None:
        """Take the options of :class:`BaseProvider` (client, members, lifetimes, hint)."""
        self._codes: dict[str, _Code] = {}
        self._keys: dict[str, _Key] = {}
        super().__init__(**options)

    def create_app(self) -> Flask:
        """Build the provider's Flask app."""
        return create_ams_app(self)

    authorize_url = endpoint_url(
        "/oauth/authorize", "Authorization endpoint of the running server."
    )
    token_url = endpoint_url("/oauth/token", "Token endpoint of the running server.")
    member_url = endpoint_url("/api/member", "Profile API of the running server.")
    logout_url = endpoint_url("/logout", "Logout endpoint of the running server.")

    def clear_grants(self) -> None:
        """Forget codes and keys."""
        self._codes.clear()
        self._keys.clear()

    def expire_codes(self) -> None:
        """Make every issued authorization code expired."""
        self.expire_grants(self._codes)

    def expire_tokens(self) -> None:
        """Make every issued access key expired."""
        self.expire_grants(self._keys)

    def profile_for(self, member: Member) -> dict[str, Any]:
        """The ``/api/member`` document: secondary emails first, the primary one last."""
        emails = [{"Address": e, "Primary": False} for e in member.secondary_emails]
        if member.email:
            emails.append({"Address": member.email, "Primary": True})
        name = {"First": member.given_name, "Last": member.family_name}
        body: dict[str, Any] = {
            "Id": member.id,
            "Login": member.username,
            "Emails": emails,
            "Name": {k: v for k, v in name.items() if v is not None},
            "Membership": {
                k: v
                for k, v in (("Status", member.membership_status), ("Type", member.membership_type))
                if v is not None
            },
            "Groups": [{"Code": g, "Name": self.members.group_name(g)} for g in member.groups],
        }
        body.update(member.extra)
        return {"Member": {k: v for k, v in body.items() if v is not None}}

    def issue_code(self, member: Member, client_id: str, redirect_uri: str) -> str:
        """Store and return a single-use code."""
        code = self.new_secret("ams")
        with self._lock:
            self._codes[code] = _Code(
                client_id, redirect_uri, member.username, time.time() + self.code_ttl
            )
        return code

    def redeem_code(self, code: str) -> tuple[_Code | None, str]:
        """Mark ``code`` used; returns (grant, error text)."""
        with self._lock:
            grant = self._codes.get(code)
            if grant is None:
                return None, "Unknown code."
            if grant.used:
                return None, "Code was already used."
            grant.used = True
            if grant.expires_at < time.time():
                return None, "Code has expired."
            return grant, ""

    def issue_key(self, username: str) -> str:
        """Store and return an access key."""
        key = self.new_secret("key")
        with self._lock:
            self._keys[key] = _Key(username, time.time() + self.token_ttl)
        return key

    def lookup_key(self, key: str) -> _Key | None:
        """The live access key, or ``None``."""
        with self._lock:
            found = self._keys.get(key)
        return found if found is not None and found.expires_at >= time.time() else None


def _error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def create_ams_app(provider: AMSProvider | None = None, **options: Any) -> Flask:
    """App factory: the AMS provider's Flask app (``app.extensions["devidp"]`` is the provider)."""
    if provider is None:
        return AMSProvider(**options).app
    return provider.build_app(__name__, ROUTES)


def authorize(idp: AMSProvider) -> Response:
    """Check the client, then run the sign-in step; the redirect back carries no ``iss``."""
    args = dict(request.args.items())
    client_id = args.get("client_id", "")
    redirect_uri = args.get("redirect_uri", "")
    if client_id != idp.client.client_id or redirect_uri not in idp.client.redirect_uris:
        return html_page(
            BRAND,
            "<h1>Invalid application</h1>"
            f"<p>Client {escape(client_id)!s} or redirect "
            f"{escape(redirect_uri)!s} is not registered.</p>",
            400,
        )
    state = args.get("state")
    if idp.faults.take("authorize", "wrong_state"):
        state = "tampered-" + (state or "")

    def back(**params: str | None) -> Response:
        return redirect(add_query(redirect_uri, {**params, "state": state}))

    fault = idp.faults.take("authorize", "error")
    if fault:
        return back(error=str(fault.value), error_description="Simulated error.")
    return sign_in(
        idp,
        BRAND,
        cancelled=lambda: back(error="access_denied", error_description="The member cancelled."),
        signed_in=lambda member: back(code=idp.issue_code(member, client_id, redirect_uri)),
    )


def token(idp: AMSProvider) -> Response:
    """Exchange a code for an access key; the request and the answer are JSON only."""
    if not request.is_json:
        return _error("invalid_request", "Content-Type must be application/json.", 415)
    try:
        body = json.loads(request.get_data(cache=True))
    except ValueError:
        return _error("invalid_request", "The body is not valid JSON.")
    if not isinstance(body, dict):
        return _error("invalid_request", "The body must be a JSON object.")
    client_id, secret = str(body.get("client_id", "")), str(body.get("client_secret", ""))
    if not idp.client.check_secret(client_id, secret):
        return _error("invalid_client", "Client authentication failed.", 401)
    if body.get("grant_type") != "authorization_code":
        return _error("unsupported_grant_type", "grant_type must be authorization_code.")
    grant, problem = idp.redeem_code(str(body.get("code", "")))
    if grant is None:
        return _error("invalid_grant", problem)
    if grant.client_id != client_id or body.get("redirect_uri") != grant.redirect_uri:
        return _error("invalid_grant", "client_id or redirect_uri does not match the code.")
    if grant.username not in idp.members:
        return _error("invalid_grant", "The member no longer exists.")
    result: dict[str, Any] = {
        "AccessKey": idp.issue_key(grant.username),
        "Expires": idp.token_ttl,
    }
    if idp.faults.take("token", "no_token"):
        del result["AccessKey"]
    return json_response({"result": result})


def member(idp: AMSProvider) -> Response:
    """The nested member profile for the access key in ``X-Api-Key``."""
    found = idp.lookup_key(request.headers.get("X-Api-Key", "").strip())
    person = idp.members.get(found.username) if found else None
    if person is None:
        return json_response({"Message": "Invalid or missing X-Api-Key."}, 401)
    return json_response(idp.profile_for(person))


def profile(idp: AMSProvider) -> Response:
    """The stand-in "edit your profile" page."""
    return account_page(BRAND)


def logout(idp: AMSProvider) -> Response:
    """Record the logout and go to ``returnUrl`` when given (any URL: this AMS checks none)."""
    idp.logouts.append(dict(request.args.items()))
    target = request.args.get("returnUrl")
    if target:
        return redirect(target)
    return html_page(BRAND, "<h1>You have been signed out</h1>")


ROUTES = (
    Route("/oauth/authorize", "authorize", authorize, ("GET", "POST")),
    Route("/oauth/token", "token", token, ("POST",)),
    Route("/api/member", "member", member),
    Route("/profile", "profile", profile),
    Route("/logout", "logout", logout),
)
