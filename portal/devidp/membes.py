"""A Membes AMS look-alike: Membes' SSO login form, its GET token call, a member-details call.

Shaped as Membes' *Single Sign On* specification (membes.atlassian.net) documents it:

1. ``GET https://<website>/member/oauthlogin/?redirect_uri=&client_id=&state=``: "This call
   will respond with a login form"; on submission the member goes back to the callback URL
   with ``?code=<access_token>&state=<callback_state>``.
2. ``GET https://api.membes.com.au/api/oauth2/?code=<callback_token>&client_secret=<secret>``
   (a GET, the code and the secret in the query, no client ID):
   ``{"status": true, "access_token": "...", "refresh_token": "..."}``; the access token is
   valid for one hour.
3. ``GET /api/oauth2/?refresh_token=<token>``: ``{"status": true, "access_token": "..."}``.

**Not documented, chosen by this fake**: the specification says only that "further
information about the authenticated user can be obtained from the membes API" once the token
is obtained, not which call. The fake serves ``GET /api/member`` with
``Authorization: Bearer <access_token>`` answering in the token call's own style (a flat,
lower-case JSON object with ``"status": true``): ``id``, ``email``, ``firstname``,
``lastname``, ``membership_status``, ``membership_type`` and ``groups`` (a list of names).
Failures answer ``{"status": false, "message": "..."}`` with a 4xx status (the specification
shows no failure either). The preset asks the manager for the real path
(``{member-details-path}``) and to check the field names with *Test this configuration*.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, request

from portal.devidp.faults import GENERIC_FAULTS
from portal.devidp.grants import Grant, Grants
from portal.devidp.members import Member
from portal.devidp.provider import BaseProvider, Route, endpoint_url
from portal.devidp.responses import json_response
from portal.devidp.signin import code_sign_in

BRAND = "membes"
#: The member-details path this fake chose (Membes does not document one).
MEMBER_DETAILS_PATH = "member"


class MembesProvider(BaseProvider):
    """``/member/oauthlogin/``, ``GET /api/oauth2/`` and the undocumented ``/api/member``."""

    FAULT_KINDS = {
        "authorize": frozenset({"slow", "status", "html"}),
        "token": GENERIC_FAULTS | {"status_false"},
        "member": GENERIC_FAULTS,
    }
    FAULT_ALIASES = {"profile": "member"}
    AUTHORIZE_PATH = "/member/oauthlogin/"

    def __init__(self, **options: Any) -> None:
        """Take the options of :class:`BaseProvider`."""
        self.codes = Grants()
        self.tokens = Grants()
        self.refresh_tokens = Grants()
        super().__init__(**options)

    def create_app(self) -> Flask:
        """Build the provider's Flask app."""
        return self.build_app(__name__, ROUTES)

    authorize_url = endpoint_url("/member/oauthlogin/", "The SSO login form.")
    token_url = endpoint_url("/api/oauth2/", "The token call (a GET).")
    member_url = endpoint_url(f"/api/{MEMBER_DETAILS_PATH}", "Member details (undocumented).")

    def clear_grants(self) -> None:
        """Forget codes and tokens."""
        self.codes.clear()
        self.tokens.clear()
        self.refresh_tokens.clear()

    def details_for(self, member: Member) -> dict[str, Any]:
        """The member-details document (this fake's choice, see the module docstring)."""
        details: dict[str, Any] = {
            "status": True,
            "id": member.id,
            "email": member.email,
            "firstname": member.given_name,
            "lastname": member.family_name,
            "membership_status": member.membership_status,
            "membership_type": member.membership_type,
            "groups": [self.members.group_name(g) for g in member.groups],
        }
        details.update(member.extra)
        return {k: v for k, v in details.items() if v is not None}


def _failed(message: str, status: int) -> Response:
    return json_response({"status": False, "message": message}, status)


def oauthlogin(idp: MembesProvider) -> Response:
    """The SSO login form; back to the callback URL with ``code`` and ``state``."""
    return code_sign_in(idp, BRAND, idp.codes, "mbcode", "Invalid SSO request")


def oauth2(idp: MembesProvider) -> Response:
    """``?code=&client_secret=`` gives tokens; ``?refresh_token=`` a new access token."""
    args = request.args
    if idp.faults.take("token", "status_false"):
        return json_response({"status": False})
    if "refresh_token" in args:
        grant = idp.refresh_tokens.live(args["refresh_token"])
        if grant is None:
            return _failed("Invalid refresh token.", 400)
        access = idp.tokens.issue("mbat", Grant(grant.username, time.time() + idp.token_ttl))
        return json_response({"status": True, "access_token": access})
    if not idp.client.check_secret(idp.client.client_id, args.get("client_secret", "")):
        return _failed("Invalid client secret.", 401)
    grant, problem = idp.codes.redeem(args.get("code", ""))
    if grant is None or grant.username not in idp.members:
        return _failed(problem or "The member no longer exists.", 400)
    access = idp.tokens.issue("mbat", Grant(grant.username, time.time() + idp.token_ttl))
    refresh = idp.refresh_tokens.issue("mbrt", Grant(grant.username, time.time() + 30 * 86400))
    return json_response({"status": True, "access_token": access, "refresh_token": refresh})


def member_details(idp: MembesProvider) -> Response:
    """The details of the member the bearer access token belongs to."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    grant = idp.tokens.live(value.strip()) if scheme.lower() == "bearer" else None
    member = idp.members.get(grant.username) if grant else None
    if member is None:
        return _failed("Invalid or expired access token.", 401)
    return json_response(idp.details_for(member))


ROUTES = (
    Route("/member/oauthlogin/", "authorize", oauthlogin, ("GET", "POST")),
    Route("/api/oauth2/", "token", oauth2),
    Route(f"/api/{MEMBER_DETAILS_PATH}", "member", member_details),
)
