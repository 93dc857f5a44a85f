"""A Novi AMS look-alike: Novi's OpenID Connect single sign-on, at Novi's paths.

Shaped as Novi's help centre documents it (*Making requests to the Novi OpenID
Connect/OAuth2 SSO*, *Getting Started Developing with Novi Single Sign On*, *Connecting the
Novi SSO and Novi API*, *Set Up a Single Sign On (SSO) Client*):

- every URL hangs off the Novi site's root: ``/.well-known/openid-configuration``,
  ``/oauth/authorize``, ``/oauth/token``, ``/oauth/userinfo`` and ``/log-out``;
- "compliant with the basic OpenID Connect standard": authorization code, the client ID (a
  GUID) and its Secret Key on the token request, an ID token, userinfo;
- ``sub`` is "a unique id for the customer record" (a GUID that Novi's member API takes);
  name and email are the standard claims ("basic profile information (name, email, customer
  ids)");
- an SSO client's **Permitted Groups** limit who may sign in: a member of none of them is
  refused. Novi does not document how; this fake answers the standard OpenID Connect way,
  a redirect back with ``error=access_denied``.

Where the documentation is silent, the fake says so rather than invent: Novi documents no
membership or group claim (none is sent), nor its JWKS path (``/.well-known/jwks`` here,
found through discovery as a client must).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from portal.devidp.members import Member
from portal.devidp.oidc import OIDCProvider
from portal.devidp.provider import endpoint_url

#: The claims Novi documents: the customer's unique id, name and email.
NOVI_CLAIMS = ("sub", "email", "email_verified", "name", "given_name", "family_name")


class NoviProvider(OIDCProvider):
    """Novi's OpenID Connect SSO: discovery, ``/oauth/*``, ``/log-out``, Permitted Groups."""

    BRAND = "Novi AMS"
    AUTHORIZE_PATH = "/oauth/authorize"
    PATHS = {
        **OIDCProvider.PATHS,
        "jwks": "/.well-known/jwks",
        "authorize": "/oauth/authorize",
        "token": "/oauth/token",
        "userinfo": "/oauth/userinfo",
        "logout": "/log-out",
    }
    SCOPES = ("openid", "email", "profile")
    CLAIMS = NOVI_CLAIMS

    def __init__(self, *, permitted_groups: Iterable[str] = (), **options: Any) -> None:
        """Take the options of :class:`OIDCProvider`, and the SSO client's Permitted Groups
        (group codes; none: every member may sign in, "regardless of membership status")."""
        self.permitted_groups = set(permitted_groups)
        super().__init__(**options)

    authorize_url = endpoint_url("/oauth/authorize", "Novi's authorization endpoint.")
    token_url = endpoint_url("/oauth/token", "Novi's token endpoint.")
    userinfo_url = endpoint_url("/oauth/userinfo", "Novi's user info endpoint.")
    jwks_url = endpoint_url("/.well-known/jwks", "The signing keys (path not documented).")
    logout_url = endpoint_url("/log-out", "Novi's log-out URL.")

    def customer_id(self, member: Member) -> str:
        """The member's Novi customer unique id (a GUID, stable per username)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"novi:{member.username}")).upper()

    def claims_for(self, member: Member) -> dict[str, Any]:
        """Only the claims Novi documents (``extra`` merged, e.g. to mimic a site's own)."""
        name = " ".join(p for p in (member.given_name, member.family_name) if p) or None
        claims: dict[str, Any] = {
            "sub": self.customer_id(member),
            "email": member.email,
            "email_verified": member.email_verified if member.email else None,
            "name": name,
            "given_name": member.given_name,
            "family_name": member.family_name,
        }
        claims.update(member.extra)
        return {k: v for k, v in claims.items() if v is not None}

    def refusal(self, member: Member) -> tuple[str, str] | None:
        """Refuse a member in none of the SSO client's Permitted Groups."""
        if self.permitted_groups and not self.permitted_groups & set(member.groups):
            return "access_denied", "You are not permitted to sign in to this application."
        return None
