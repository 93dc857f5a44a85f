"""Fixtures for the sign-in flow: loopback identity providers and systems configured for them."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from portal.devidp import AMSProvider, Member, OIDCProvider
from portal.extensions import db
from portal.models import AuthSystem, Identity, User
from portal.sso.discovery import get_discovery_cache
from portal.sso.idtoken import get_jwks_cache

#: Every character that tends to get mangled on the way to the provider.
CLIENT_SECRET = 's3cr3t+/=&"value é'
CLIENT_ID = "portal-client"
#: Read timeout of the tests: loopback answers are fast, the "slow" fault sleeps 3 s.
READ_TIMEOUT = 1.0
MAX_BYTES = 64 * 1024


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Use short timeouts and a small response cap for the outbound HTTP of these tests."""
    return {
        **app_config,
        "PORTAL_HTTP_CONNECT_TIMEOUT": 1.0,
        "PORTAL_HTTP_READ_TIMEOUT": READ_TIMEOUT,
        "PORTAL_HTTP_MAX_BYTES": MAX_BYTES,
    }


@pytest.fixture(autouse=True)
def _fresh_jwks_cache() -> Iterator[None]:
    """Forget key sets and discovery documents between tests: each test's provider has its
    own keys on its own port."""
    get_jwks_cache().clear()
    get_discovery_cache().clear()
    yield
    get_jwks_cache().clear()
    get_discovery_cache().clear()


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


def _oidc_system(create_auth_system, idp: OIDCProvider, name: str = "Loopback OIDC", **over):
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
        "logout_url": f"{idp.logout_url}?id_token_hint=%IDToken%"
        "&post_logout_redirect_uri=%ReturnToURL%",
        "profile_edit_url": f"{idp.url}/account?return=%ReturnToURL%",
        "login_label": "Sign in with Loopback OIDC",
        "login_mode": "local_and_remote",
    }
    fields.update(over)
    return create_auth_system(name=name, client_secret=CLIENT_SECRET, params=params, **fields)


def _ams_system(create_auth_system, idp: AMSProvider, name: str = "Member Center", **over):
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


@pytest.fixture
def oidc(app, create_auth_system) -> Iterator[Provider]:
    """A running OIDC provider with Jane, and a system configured for it."""
    idp = OIDCProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=["http://localhost/sso/loopback-oidc/callback"],
        members=[jane()],
    )
    idp.client.post_logout_redirect_uris = ["http://localhost/"]
    with idp:
        provider = Provider(
            "oidc", idp, lambda **over: _oidc_system(create_auth_system, idp, **over)
        )
        provider.extra["id_tokens"] = issued = []
        make_id_token = idp.make_id_token

        def recording_make_id_token(*args, **kwargs):
            token = make_id_token(*args, **kwargs)
            if token:
                issued.append(token)
            return token

        idp.make_id_token = recording_make_id_token  # type: ignore[method-assign]
        provider.configure()
        yield provider


@pytest.fixture
def ams(app, create_auth_system) -> Iterator[Provider]:
    """A running AMS-style provider with Jane, and a system configured for it."""
    idp = AMSProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=["http://localhost/sso/member-center/callback"],
        members=[jane()],
    )
    with idp:
        provider = Provider("ams", idp, lambda **over: _ams_system(create_auth_system, idp, **over))
        provider.configure()
        yield provider


@pytest.fixture(params=["oidc", "ams"])
def provider(request) -> Provider:
    """Each loopback provider in turn."""
    return request.getfixturevalue(request.param)


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


@pytest.fixture
def sso(client) -> SSO:
    """Return the SSO flow driver."""
    return SSO(client)


def count(model) -> int:
    """Return how many rows a model's table holds."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def users_and_identities() -> tuple[int, int]:
    """Return (users, identities) counts."""
    db.session.expire_all()
    return count(User), count(Identity)


REFERENCE = re.compile(r"Reference: <code>([0-9a-f]{8})</code>")


def assert_failure_page(resp, caplog, message: str, code: str, secrets: list[str]) -> str:
    """Check an SSO failure page: message, reference logged once with the code, no secrets."""
    page = resp.get_data(as_text=True)
    # Failure messages never quote the page: it is checked for secrets only below.
    assert message in page, f"the page does not say {message!r}"
    match = REFERENCE.search(page)
    assert match, "the failure page shows no reference"
    reference = match.group(1)
    lines = [r.getMessage() for r in caplog.records if f"ref={reference}" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"code={code}" in lines[0], lines[0]
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in filter(None, secrets):
        assert secret not in page, f"secret {secret[:6]}... in the page"
        assert secret not in logs, f"secret {secret[:6]}... in the logs"
    return reference


@pytest.fixture
def logs(caplog):
    """Capture INFO and up from every logger."""
    caplog.set_level(logging.INFO)
    return caplog
