"""An iMIS look-alike: a token endpoint and the REST API's user, party and group-member calls.

Shaped as the iMIS REST API documentation (developer.imis.com) shows its answers: .NET
JSON with a ``$type`` on every object and collections as ``{"$type": ..., "$values": [...]}``,
lists wrapped in a ``PagedResult`` (``Items``, ``Offset``, ``Limit``, ``Count``,
``TotalCount``, ``HasNext``...):

1. ``/sso-login?client_id=&redirect_uri=&state=``: the sign-in page a partner adds in front
   of iMIS (iMIS's own SSO starts at iMIS instead; see the preset's notes); back with
   ``code`` and ``state``.
2. ``POST /token`` (form: ``grant_type=authorization_code``, ``code``, ``redirect_uri``,
   ``client_id``, ``client_secret``): the ASP.NET token answer (``access_token``,
   ``token_type``, ``expires_in``, ``refresh_token``, ``userName``, ``.issued``, ``.expires``).
3. ``GET /api/user?UserName=…`` (Bearer): a PagedResult of ``UserData``, whose ``Party.Id``
   is the member's PartyId.
4. ``GET /api/party/{PartyId}``: ``PersonData``: ``Id``, ``PersonName`` (``FirstName``,
   ``LastName``, ``FullName``), ``Emails`` (``$values`` of ``EmailData`` with
   ``IsPrimary``), ``Status`` and ``AdditionalAttributes`` (``GenericPropertyData``
   ``Name``/``Value`` pairs: ``CustomerTypeCode``, ``MemberStatus``).
5. ``GET /api/GroupMember?PartyId=…``: a PagedResult of ``GroupMemberData`` whose
   ``Group.Name`` are the member's groups.

A token reads only its own member's user, party and groups.

iMIS's own Single Sign-On starts at iMIS: a Single Sign-On content item POSTs the member's
``refresh_token`` to the client application's URL, and the partner redeems it at ``POST
/token`` (form: ``grant_type=refresh_token``, ``client_id``, ``client_secret``,
``refresh_token``; developer.imis.com "Obtaining an access token for Single Sign On"). The
answer has the same shape as above. `issue_refresh_token` plays the content item's part. As
iMIS's help describes it ("they do not need the end user's credentials for this as long as the
refresh token is valid"), a refresh token is **not** single-use: it redeems again until it
expires (``refresh_ttl``, default one hour).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Response, request

from portal.devidp.faults import GENERIC_FAULTS
from portal.devidp.grants import Grant, Grants
from portal.devidp.members import Member
from portal.devidp.provider import BaseProvider, Route, endpoint_url
from portal.devidp.responses import json_response
from portal.devidp.signin import code_sign_in

BRAND = "iMIS"
_CONTRACTS = "Asi.Contracts"
_MEMBERSHIP = "Asi.Soa.Membership.DataContracts"


def _typed(name: str, **values: Any) -> dict[str, Any]:
    """An iMIS data contract object: its ``$type`` first."""
    return {"$type": f"{name}, {_CONTRACTS}", **values}


def _collection(name: str, values: list[Any]) -> dict[str, Any]:
    return {"$type": f"{name}, {_CONTRACTS}", "$values": values}


def _paged(item_type: str, items: list[Any]) -> dict[str, Any]:
    """A PagedResult of ``items`` (all on one page)."""
    return {
        "$type": f"Asi.Soa.Core.DataContracts.PagedResult`1[[{item_type}, {_CONTRACTS}]], "
        f"{_CONTRACTS}",
        "Items": {
            "$type": f"System.Collections.Generic.List`1[[{item_type}, {_CONTRACTS}]], mscorlib",
            "$values": items,
        },
        "Offset": 0,
        "Limit": 100,
        "Count": len(items),
        "TotalCount": len(items),
        "NextPageLink": None,
        "HasNext": False,
        "NextOffset": 0,
    }


class IMISProvider(BaseProvider):
    """``/sso-login``, ``/token``, ``/api/user``, ``/api/party/{id}``, ``/api/GroupMember``."""

    FAULT_KINDS = {
        "authorize": frozenset({"slow", "status", "html"}),
        "token": GENERIC_FAULTS,
        "user": GENERIC_FAULTS,
        "party": GENERIC_FAULTS,
        "group_member": GENERIC_FAULTS,
    }
    AUTHORIZE_PATH = "/sso-login"

    def __init__(self, **options: Any) -> None:
        """Take the options of :class:`BaseProvider`."""
        self._codes = Grants()
        self._tokens = Grants()
        self._refresh = Grants()
        self.refresh_ttl = 3600
        super().__init__(**options)

    def create_app(self) -> Flask:
        """Build the provider's Flask app."""
        return self.build_app(__name__, ROUTES)

    authorize_url = endpoint_url("/sso-login", "The partner's sign-in page.")
    token_url = endpoint_url("/token", "Token endpoint.")

    def clear_grants(self) -> None:
        """Forget codes and tokens."""
        self._codes.clear()
        self._tokens.clear()
        self._refresh.clear()

    def issue_refresh_token(self, username: str, *, ttl: float | None = None) -> str:
        """Return a refresh token for a member, as iMIS's Single Sign-On content item POSTs it."""
        if self.members.get(username) is None:
            raise KeyError(username)
        lifetime = self.refresh_ttl if ttl is None else ttl
        return self._refresh.issue("imisrt", Grant(username, time.time() + lifetime))

    def party_id(self, member: Member) -> str:
        """Return the member's PartyId (iMIS ids are text)."""
        return str(member.id)

    def user_for(self, member: Member) -> dict[str, Any]:
        """The UserData of a member."""
        return _typed(
            f"{_MEMBERSHIP}.User.UserData",
            Party=_typed(f"{_MEMBERSHIP}.PartySummaryData", Id=self.party_id(member)),
            UserId=f"U{member.id}",
            UserName=member.username,
        )

    def party_for(self, member: Member) -> dict[str, Any]:
        """The PersonData of a member."""
        emails = [
            _typed(f"{_MEMBERSHIP}.EmailData", Address=e, EmailType="_Other", IsPrimary=False)
            for e in member.secondary_emails
        ]
        if member.email:
            emails.append(
                _typed(
                    f"{_MEMBERSHIP}.EmailData",
                    Address=member.email,
                    EmailType="_Primary",
                    IsPrimary=True,
                )
            )
        attributes = [
            _typed("Asi.Soa.Core.DataContracts.GenericPropertyData", Name=name, Value=value)
            for name, value in (
                ("CustomerTypeCode", member.membership_type),
                ("MemberStatus", member.membership_status),
            )
            if value is not None
        ]
        name = {"FirstName": member.given_name, "LastName": member.family_name}
        full = " ".join(v for v in name.values() if v)
        return _typed(
            f"{_MEMBERSHIP}.PersonData",
            PersonName=_typed(
                f"{_MEMBERSHIP}.PersonNameData",
                **{k: v for k, v in name.items() if v is not None},
                FullName=full,
            ),
            Id=self.party_id(member),
            PartyId=self.party_id(member),
            Name=full,
            Emails=_collection(f"{_MEMBERSHIP}.EmailDataCollection", emails),
            AdditionalAttributes=_collection(
                "Asi.Soa.Core.DataContracts.GenericPropertyDataCollection", attributes
            ),
        )

    def group_members_for(self, member: Member) -> list[dict[str, Any]]:
        """The GroupMemberData of each of the member's groups."""
        return [
            _typed(
                f"{_MEMBERSHIP}.GroupMemberData",
                Group=_typed(
                    f"{_MEMBERSHIP}.GroupSummaryData",
                    GroupId=code,
                    Name=self.members.group_name(code),
                ),
                Party=_typed(f"{_MEMBERSHIP}.PartySummaryData", Id=self.party_id(member)),
                IsActive=True,
            )
            for code in member.groups
        ]

    def member_of(self, authorization: str) -> Member | None:
        """The member whose live Bearer token ``authorization`` carries."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        grant = self._tokens.live(token.strip())
        return self.members.get(grant.username) if grant is not None else None


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def _unauthorized() -> Response:
    return json_response({"Message": "Authorization has been denied for this request."}, 401)


def sso_login(idp: IMISProvider) -> Response:
    """The partner's sign-in page; back with ``code`` and ``state``."""
    return code_sign_in(idp, BRAND, idp._codes, "imiscode", "Unknown client")


def token(idp: IMISProvider) -> Response:
    """The ASP.NET token endpoint: a form body, an answer with ``userName``."""
    form = request.form
    if not idp.client.check_secret(form.get("client_id", ""), form.get("client_secret", "")):
        return _oauth_error("invalid_client", "Client authentication failed.", 401)
    grant_type = form.get("grant_type")
    if grant_type == "refresh_token":
        # Reusable until it expires (see the module's docstring).
        grant = idp._refresh.live(form.get("refresh_token", ""))
        if grant is None:
            return _oauth_error("invalid_grant", "The refresh token is invalid or expired.")
    elif grant_type == "authorization_code":
        grant, _ = idp._codes.redeem(form.get("code", ""))
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return _oauth_error("invalid_grant", "The code is invalid, used or expired.")
    else:
        return _oauth_error(
            "unsupported_grant_type", "grant_type must be authorization_code or refresh_token."
        )
    access = idp._tokens.issue("imisat", Grant(grant.username, time.time() + idp.token_ttl))
    now = datetime.now(UTC)
    http_date = "%a, %d %b %Y %H:%M:%S GMT"
    return json_response(
        {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": idp.token_ttl,
            "refresh_token": idp.issue_refresh_token(grant.username),
            "userName": grant.username,
            ".issued": now.strftime(http_date),
            ".expires": (now + timedelta(seconds=idp.token_ttl)).strftime(http_date),
        }
    )


def user(idp: IMISProvider) -> Response:
    """``/api/user?UserName=``: the signed-in member's own user, or an empty page."""
    member = idp.member_of(request.headers.get("Authorization", ""))
    if member is None:
        return _unauthorized()
    wanted = request.args.get("UserName", "")
    items = [idp.user_for(member)] if wanted.lower() == member.username.lower() else []
    return json_response(_paged(f"{_MEMBERSHIP}.User.UserData", items))


def party(idp: IMISProvider, party_id: str) -> Response:
    """``/api/party/{PartyId}``: the member's own party only."""
    member = idp.member_of(request.headers.get("Authorization", ""))
    if member is None:
        return _unauthorized()
    if party_id != idp.party_id(member):
        return json_response({"Message": "Not found."}, 404)
    return json_response(idp.party_for(member))


def group_member(idp: IMISProvider) -> Response:
    """``/api/GroupMember?PartyId=``: the member's own groups only."""
    member = idp.member_of(request.headers.get("Authorization", ""))
    if member is None:
        return _unauthorized()
    if request.args.get("PartyId") != idp.party_id(member):
        return json_response(_paged(f"{_MEMBERSHIP}.GroupMemberData", []))
    return json_response(_paged(f"{_MEMBERSHIP}.GroupMemberData", idp.group_members_for(member)))


ROUTES = (
    Route("/sso-login", "authorize", sso_login, ("GET", "POST")),
    Route("/token", "token", token, ("POST",)),
    Route("/api/user", "user", user),
    Route("/api/party/<party_id>", "party", party),
    Route("/api/GroupMember", "group_member", group_member),
)
