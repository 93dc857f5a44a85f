"""A YourMembership look-alike: OAuth code at ``lock.aspx``, then the REST API's session calls.

Shaped as YM's documentation describes it (the *Getting Started with OAuth* guide and the
REST service's metadata pages, ``ws.yourmembership.com/json/metadata?op=...``), PascalCase
throughout, ServiceStack-style answers:

1. ``GET /lock.aspx?app_id=&redirect_uri=&scope=&state=``: the member signs in; back with
   ``code`` and ``state``.
2. ``POST /OAuth/GetAccessToken`` (JSON ``GrantType``, ``AppId``, ``AppSecret``, ``Code``):
   ``{"AccessToken": ..., "ExpiresIn": ...}``.
3. ``POST /Ams/Authenticate`` (JSON ``provider: "OAuth"``, ``ClientID`` (the YM site's
   number), ``UserType: "Member"``, ``AccessToken``): the "who am I" call, giving the
   ``ClientID``, the ``MemberID`` and a ``SessionId``.
4. ``GET /Ams/{ClientID}/Member/{MemberID}/MemberProfile`` with ``X-SS-ID: <SessionId>``:
   ``MemberID``, ``AccountInformation`` (``UserName``, ``Membership``,
   ``MembershipExpiresDate`` as a .NET JSON date, ``PrimaryGroupName``) and
   ``PersonalInformation`` (``FirstName``, ``LastName``, ``Email``).

YM has no membership-status string: a member's ``extra["MembershipExpiresDate"]`` (an ISO
date) sets the expiry; without it the membership runs a year from now, and a member whose
``membership_status`` is ``Lapsed`` expired a month ago.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Response, redirect, request
from markupsafe import escape

from portal.devidp.faults import GENERIC_FAULTS
from portal.devidp.grants import Grant, Grants
from portal.devidp.members import Member
from portal.devidp.provider import BaseProvider, Route, endpoint_url
from portal.devidp.responses import add_query, html_page, json_response
from portal.devidp.signin import sign_in

BRAND = "YourMembership"
#: The YM site's ClientID (a number), which Authenticate expects and returns.
SITE_CLIENT_ID = 28051


class YourMembershipProvider(BaseProvider):
    """``/lock.aspx``, ``/OAuth/GetAccessToken``, ``/Ams/Authenticate`` and the MemberProfile."""

    FAULT_KINDS = {
        "authorize": frozenset({"slow", "status", "html"}),
        "token": GENERIC_FAULTS,
        "authenticate": GENERIC_FAULTS,
        "member_profile": GENERIC_FAULTS,
    }
    AUTHORIZE_PATH = "/lock.aspx"

    def __init__(self, *, site_client_id: int = SITE_CLIENT_ID, **options: Any) -> None:
        """Take the options of :class:`BaseProvider`, and the YM site's ClientID."""
        self.site_client_id = site_client_id
        self._codes = Grants()
        self._tokens = Grants()
        self._sessions = Grants()
        super().__init__(**options)

    def create_app(self) -> Flask:
        """Build the provider's Flask app."""
        return self.build_app(__name__, ROUTES)

    authorize_url = endpoint_url("/lock.aspx", "The member sign-in (authorize) page.")
    token_url = endpoint_url("/OAuth/GetAccessToken", "Token endpoint.")
    authenticate_url = endpoint_url("/Ams/Authenticate", "The session (who am I) call.")

    def clear_grants(self) -> None:
        """Forget codes, tokens and sessions."""
        self._codes.clear()
        self._tokens.clear()
        self._sessions.clear()

    def member_id(self, member: Member) -> int:
        """Return the member's YM MemberID."""
        return member.id

    def expires(self, member: Member) -> str:
        """Return the member's MembershipExpiresDate as YM's JSON writes it (``/Date(ms)/``)."""
        text = member.extra.get("MembershipExpiresDate")
        if isinstance(text, str):
            moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
        elif member.membership_status == "Lapsed":
            moment = datetime.now(UTC) - timedelta(days=30)
        else:
            moment = datetime.now(UTC) + timedelta(days=365)
        return f"/Date({int(moment.timestamp() * 1000)}-0000)/"

    def profile_for(self, member: Member) -> dict[str, Any]:
        """The MemberProfile document of a member."""
        account = {
            "UserName": member.username,
            "Membership": member.membership_type,
            "MembershipExpiresDate": self.expires(member),
            "PrimaryGroupName": self.members.group_name(member.groups[0])
            if member.groups
            else None,
        }
        personal = {
            "FirstName": member.given_name,
            "LastName": member.family_name,
            "Email": member.email,
        }
        return {
            "MemberID": self.member_id(member),
            "AccountInformation": {k: v for k, v in account.items() if v is not None},
            "PersonalInformation": {k: v for k, v in personal.items() if v is not None},
            "ResponseStatus": {"ErrorCode": None, "Message": None},
        }


def _failed(message: str, status: int) -> Response:
    """A ServiceStack error: ``ResponseStatus`` with an ``ErrorCode`` and a ``Message``."""
    return json_response(
        {"ResponseStatus": {"ErrorCode": "Unauthorized", "Message": message}}, status
    )


def _json_body() -> dict[str, Any] | None:
    try:
        body = json.loads(request.get_data(cache=True) or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def lock(idp: YourMembershipProvider) -> Response:
    """The member sign-in page of the YM site; back to the app with ``code`` and ``state``."""
    args = dict(request.args.items())
    app_id, redirect_uri = args.get("app_id", ""), args.get("redirect_uri", "")
    if app_id != idp.client.client_id or redirect_uri not in idp.client.redirect_uris:
        return html_page(
            BRAND,
            f"<h1>Unknown app</h1><p>App {escape(app_id)!s} or redirect "
            f"{escape(redirect_uri)!s} is not registered.</p>",
            400,
        )

    def back(**params: str | None) -> Response:
        return redirect(add_query(redirect_uri, {**params, "state": args.get("state")}))

    def signed_in(member: Member) -> Response:
        grant = Grant(member.username, time.time() + idp.code_ttl, app_id, redirect_uri)
        return back(code=idp._codes.issue("ymcode", grant))

    return sign_in(idp, BRAND, cancelled=lambda: back(error="access_denied"), signed_in=signed_in)


def get_access_token(idp: YourMembershipProvider) -> Response:
    """Exchange the code (JSON body) for an access token."""
    body = _json_body()
    if body is None:
        return _failed("The body must be a JSON object.", 400)
    if not idp.client.check_secret(str(body.get("AppId", "")), str(body.get("AppSecret", ""))):
        return _failed("Invalid AppId or AppSecret.", 401)
    if body.get("GrantType") != "Code":
        return _failed("GrantType must be Code.", 400)
    grant, _ = idp._codes.redeem(str(body.get("Code", "")))
    if grant is None or grant.client_id != body.get("AppId"):
        return _failed("Invalid or expired Code.", 400)
    token = idp._tokens.issue("ymat", Grant(grant.username, time.time() + idp.token_ttl))
    return json_response({"AccessToken": token, "ExpiresIn": idp.token_ttl})


def authenticate(idp: YourMembershipProvider) -> Response:
    """Open an API session for the member the access token belongs to: "who am I"."""
    body = _json_body()
    if body is None or body.get("provider") != "OAuth" or body.get("UserType") != "Member":
        return _failed("provider must be OAuth and UserType Member.", 400)
    if str(body.get("ClientID", "")) != str(idp.site_client_id):
        return _failed("Unknown ClientID.", 401)
    grant = idp._tokens.live(str(body.get("AccessToken", "")))
    member = idp.members.get(grant.username) if grant else None
    if grant is None or member is None:
        return _failed("Invalid or expired AccessToken.", 401)
    session = idp._sessions.issue("ymss", Grant(grant.username, time.time() + 900))
    return json_response(
        {
            "ClientID": idp.site_client_id,
            "MemberID": idp.member_id(member),
            "SessionId": session,
            "IsAuthenticated": True,
            "ResponseStatus": {"ErrorCode": None, "Message": None},
        }
    )


def member_profile(idp: YourMembershipProvider, client_id: str, member_id: str) -> Response:
    """The member's profile, for the session in ``X-SS-ID``, only for its own member."""
    grant = idp._sessions.live(request.headers.get("X-SS-ID", "").strip())
    member = idp.members.get(grant.username) if grant else None
    if grant is None or member is None:
        return _failed("Invalid or expired session (X-SS-ID).", 401)
    if client_id != str(idp.site_client_id) or member_id != str(idp.member_id(member)):
        return _failed("This session may not read that member.", 403)
    return json_response(idp.profile_for(member))


ROUTES = (
    Route("/lock.aspx", "authorize", lock, ("GET", "POST")),
    Route("/OAuth/GetAccessToken", "token", get_access_token, ("POST",)),
    Route("/Ams/Authenticate", "authenticate", authenticate, ("POST",)),
    Route("/Ams/<client_id>/Member/<member_id>/MemberProfile", "member_profile", member_profile),
)
