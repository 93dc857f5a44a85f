"""Loopback identity providers as the tests configure them: members, systems, the flow driver."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask.testing import FlaskClient

from portal.devidp import AMSProvider, Member, OIDCProvider
from portal.extensions import db
from portal.models import AuthSystem

#: Every character that tends to get mangled on the way to the provider.
CLIENT_SECRET = 's3cr3t+/=&"value é'
CLIENT_ID = "portal-client"
#: Read timeout of the tests: roomy for a loaded machine; the "slow" fault sleeps 3 s.
READ_TIMEOUT = 2.0
MAX_BYTES = 64 * 1024
#: Outbound HTTP settings of the sign-in tests: short timeouts and a small response cap.
OUTBOUND_LIMITS: dict[str, Any] = {
    "PORTAL_HTTP_CONNECT_TIMEOUT": 2.0,
    "PORTAL_HTTP_READ_TIMEOUT": READ_TIMEOUT,
    "PORTAL_HTTP_MAX_BYTES": MAX_BYTES,
}


def jane() -> Member:
    """Return the member most tests sign in as."""
    return Member(
        username="jdoe",
        password="pw-jane",
        email="jane.doe@example.org",
        given_name="Jane",
        family_name="Doe",
        membership_status="Active",
        membership_type="Professional",
        groups=["WEBINARS"],
    )


def add_member(idp: Any, username: str, **claims: Any) -> None:
    """Add an active member ``username`` (password ``pw``, WEBINARS) to a loopback provider."""
    values: dict[str, Any] = {
        "password": "pw",
        "email": f"{username}@example.org",
        "given_name": username.title(),
        "family_name": "Member",
        "membership_status": "Active",
        "groups": ["WEBINARS"],
    }
    values.update(claims)
    idp.members.add(username, **values)


@dataclass
class Provider:
    """A running loopback provider and the authentication system configured for it."""

    kind: str
    idp: OIDCProvider | AMSProvider
    make_system: Callable[..., AuthSystem]
    system: AuthSystem | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        assert self.system is not None
        return self.system.slug

    def configure(self, **changes: Any) -> AuthSystem:
        """Create the system (or re-create it with changes to its fields and params)."""
        self.system = self.make_system(**changes)
        return self.system

    def issued_secrets(self) -> list[str]:
        """Return every code and token the provider issued so far (to search pages and logs)."""
        idp = self.idp
        found: list[str] = [CLIENT_SECRET]
        for name in ("_codes", "_tokens", "_refresh", "_keys"):
            found.extend(getattr(idp, name, {}).keys())
        for req in idp.requests.all("token"):
            body = req.body.decode("utf-8", "replace")
            found.extend(re.findall(r"code_verifier=([\w\-.~%]+)", body))
        for value in self.extra.get("id_tokens", []):
            found.append(value)
        return [s for s in found if s]


def oidc_connection(idp: OIDCProvider) -> dict[str, str]:
    """Return the fields that connect a system to a loopback OIDC provider: PKCE, nonce and
    ID token validation on, secret in the token body, profile from userinfo."""
    return {
        "login_url": f"{idp.authorize_url}?response_type=code&client_id=%ClientID%"
        "&redirect_uri=%RedirectURL%&scope=%Scope%&state=%State%&nonce=%Nonce%"
        "&code_challenge=%CodeChallenge%&code_challenge_method=S256",
        "token_url": idp.token_url,
        "token_body": "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
        "&client_id=%ClientID%&client_secret=%ClientSecret%&code_verifier=%CodeVerifier%",
        "profile_url": idp.userinfo_url,
        "profile_headers": "Authorization: Bearer %Token%",
        "issuer": idp.issuer,
        "jwks_url": idp.jwks_url,
        "scope": "openid email profile",
    }


def oidc_logout_url(idp: OIDCProvider) -> str:
    """Return the Logout URL of a loopback OIDC provider (ID token hint, return address)."""
    return f"{idp.logout_url}?id_token_hint=%IDToken%&post_logout_redirect_uri=%ReturnToURL%"


def oidc_system(create_auth_system, idp: OIDCProvider, name: str = "Loopback OIDC", **over):
    """Save a system configured for a loopback OIDC provider (fields and params overridable)."""
    params = {
        "user_id": {"path": "sub"},
        "username": {"path": "preferred_username"},
        "email": {"path": "email"},
        "first_name": {"path": "given_name"},
        "last_name": {"path": "family_name"},
        "membership_status": {"path": "membership_status"},
        "membership_type": {"path": "membership_type"},
        "groups": {"path": "groups"},
    }
    for key, opts in over.pop("params", {}).items():
        params[key] = {**params.get(key, {}), **opts}
    fields = {
        "client_id": CLIENT_ID,
        **oidc_connection(idp),
        "logout_url": oidc_logout_url(idp),
        "profile_edit_url": f"{idp.url}/account?return=%ReturnToURL%",
        "login_label": "Sign in with Loopback OIDC",
        "login_mode": "local_and_remote",
    }
    fields.update(over)
    return create_auth_system(name=name, client_secret=CLIENT_SECRET, params=params, **fields)


def ams_system(create_auth_system, idp: AMSProvider, name: str = "Member Center", **over):
    """Save a system configured for a loopback AMS provider (fields and params overridable)."""
    params = {
        "user_id": {"path": "Member.Id"},
        "username": {"path": "Member.Login"},
        "email": {"path": "Member.Emails[?Primary].Address | [0]"},
        "first_name": {"path": "Member.Name.First"},
        "last_name": {"path": "Member.Name.Last"},
        "membership_status": {"path": "Member.Membership.Status"},
        "membership_type": {"path": "Member.Membership.Type"},
        "groups": {"path": "Member.Groups[].Code"},
    }
    for key, opts in over.pop("params", {}).items():
        params[key] = {**params.get(key, {}), **opts}
    fields = {
        "client_id": CLIENT_ID,
        "login_url": f"{idp.authorize_url}?client_id=%ClientID%&redirect_uri=%RedirectURL%"
        "&state=%State%",
        "token_url": idp.token_url,
        "token_headers": "Content-Type: application/json",
        "token_body": '{"grant_type": "authorization_code", "code": "%Code%", '
        '"client_id": "%ClientID%", "client_secret": "%ClientSecret%", '
        '"redirect_uri": "%RedirectURL%"}',
        "access_token_path": "result.AccessKey",
        "profile_url": idp.member_url,
        "profile_headers": "X-Api-Key: %Token%",
        "issuer": "",
        "jwks_url": "",
        "scope": "",
        "logout_url": f"{idp.logout_url}?returnUrl=%ReturnToURL%",
        "profile_edit_url": f"{idp.url}/profile?returnUrl=%ReturnToURL%",
        "login_label": "Sign in with the Member Center",
        "login_mode": "local_and_remote",
    }
    fields.update(over)
    return create_auth_system(name=name, client_secret=CLIENT_SECRET, params=params, **fields)


def reconfigure(provider: Provider, **changes: Any) -> AuthSystem:
    """Replace the provider's system with one configured with ``changes``."""
    assert provider.system is not None
    db.session.delete(provider.system)
    db.session.commit()
    return provider.configure(**changes)


class SSO:
    """Drive the sign-in flow through the test client and the provider's sign-in form."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.last_callback: str | None = None

    def start(self, provider: Provider, next_path: str | None = None):
        url = f"/sso/{provider.slug}/login"
        if next_path:
            url += f"?next={next_path}"
        return self.client.get(url)

    def authorize(self, provider: Provider, username: str = "jdoe", **kw) -> str:
        """Start the flow and sign in at the provider; return the callback path with query."""
        resp = self.start(provider)
        assert resp.status_code == 302, f"starting the sign-in answered {resp.status_code}"
        back = provider.idp.authorize_redirect(resp.headers["Location"], username, **kw)
        parts = urlsplit(back)
        self.last_callback = f"{parts.path}?{parts.query}"
        return self.last_callback

    def callback(self, path: str, client: FlaskClient | None = None):
        return (client or self.client).get(path)

    def sign_in(self, provider: Provider, username: str = "jdoe", **kw):
        """Run the whole flow; return the callback's response."""
        return self.callback(self.authorize(provider, username, **kw))
