"""Issue 12 at the sign-in callback: internal addresses, key rotation and the iss parameter.

Findings 4 (connection half), 11 and 15b, played through the real callback against the
loopback providers: the member's page, what the provider (or an internal service) received,
and that no user, identity or session was written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from werkzeug.wrappers import Response

from portal.config import http_settings
from portal.devidp.oidc_authority import _new_key
from portal.extensions import db
from portal.models import AuditEvent
from tests.support.failures import assert_failure_page
from tests.support.rows import count, users_and_identities
from tests.support.servers import App, LoopbackServer


@pytest.fixture
def internal() -> Iterator[LoopbackServer]:
    """An internal service on loopback that must never hear from Portal in production."""
    app = App()
    app.routes["/token"] = lambda r: Response(
        '{"access_token": "internal-data"}', content_type="application/json"
    )
    server = LoopbackServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def production(app) -> Iterator[None]:
    """Outbound calls judged as in production (the rest of the app's config unchanged)."""
    app.config["PORTAL_ENV"] = "production"
    yield
    app.config["PORTAL_ENV"] = "development"


def test_a_token_url_on_loopback_is_never_called_in_production(
    oidc, sso, logs, internal, production
):
    """finding 4: a token URL stored straight in the database (past the form) pointing at a
    live loopback service: the sign-in fails on the failure page, and the service received
    zero requests: no internal fetch, no secret sent, nothing written."""
    oidc.system.token_url = internal.url + "/token"
    db.session.commit()
    path = sso.authorize(oidc)
    resp = sso.callback(path)
    assert resp.status_code == 502
    assert_failure_page(
        resp,
        logs,
        "identity provider is unavailable",
        "provider_address_refused",
        oidc.issued_secrets(),
    )
    assert internal.app.requests == []
    assert users_and_identities() == (0, 0)
    assert sso.client.get("/account").status_code == 302  # nobody signed in
    # The log names the host and the reason, for the operator.
    assert any("127.0.0.1" in r.getMessage() and "loopback" in r.getMessage() for r in logs.records)


def test_allowed_private_networks_reach_an_on_premises_provider(oidc, sso, app, production):
    """PORTAL_ALLOWED_PRIVATE_NETWORKS lets an operator reach a provider on a listed network,
    in production: the whole sign-in works through the loopback provider."""
    app.config["PORTAL_ALLOWED_PRIVATE_NETWORKS"] = (ipaddress.ip_network("127.0.0.0/8"),)
    try:
        resp = sso.sign_in(oidc)
    finally:
        app.config["PORTAL_ALLOWED_PRIVATE_NETWORKS"] = ()
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/"
    assert users_and_identities() == (1, 1)


def test_the_services_build_the_client_settings_with_the_policy(app):
    """http_settings(): the total deadline and the environment's address policy."""
    with app.app_context():
        app.config["PORTAL_HTTP_TOTAL_TIMEOUT"] = 9.0
        dev = http_settings()
        assert dev.total_timeout == 9.0
        assert dev.policy.allow_loopback is True
        app.config["PORTAL_ENV"] = "production"
        app.config["PORTAL_ALLOWED_PRIVATE_NETWORKS"] = (ipaddress.ip_network("10.20.0.0/16"),)
        prod = http_settings()
    assert prod.policy.allow_loopback is False
    assert prod.policy.address_problem("10.20.1.2") is None
    assert prod.policy.address_problem("10.21.1.2") is not None


# -- finding 11: keys that change -------------------------------------------------------------


def test_a_provider_rekeying_under_the_same_kid_needs_no_restart(oidc, sso, client):
    """The provider replaces its signing key but keeps the kid: the next sign-in fails its
    signature check with the cached key, fetches the key set once more, and succeeds."""
    assert sso.sign_in(oidc).headers["Location"] == "/"
    client.post("/logout")
    jwks_before = len(oidc.idp.requests.all("jwks"))
    kid = oidc.idp.kid
    oidc.idp._key = _new_key(kid)  # same kid, new key
    resp = sso.sign_in(oidc)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/"
    assert len(oidc.idp.requests.all("jwks")) == jwks_before + 1
    assert users_and_identities() == (1, 1)


def test_tokens_signed_by_an_impostor_refetch_the_keys_at_most_once(oidc, sso, client, logs):
    """A flood of ID tokens with bad signatures: every sign-in fails, and the key set is
    fetched again once, not once per token."""
    assert sso.sign_in(oidc).headers["Location"] == "/"
    client.post("/logout")
    jwks_before = len(oidc.idp.requests.all("jwks"))
    for _ in range(4):
        oidc.idp.faults.set("id_token", "bad_signature", times=1)
        resp = sso.sign_in(oidc)
        assert resp.status_code != 302
        assert "id_token_invalid" in "\n".join(r.getMessage() for r in logs.records)
    assert len(oidc.idp.requests.all("jwks")) == jwks_before + 1


# -- finding 15b: the iss parameter -----------------------------------------------------------


def test_a_callback_without_iss_is_refused_and_nothing_is_written(oidc, sso, logs):
    """The provider's discovery advertises authorization_response_iss_parameter_supported:
    a callback without iss is refused before the token request; no user, identity or
    session; the discovery document is fetched once and then served from the cache."""
    oidc.idp.faults.set("authorize", "no_iss", times=2)
    resp = sso.sign_in(oidc)
    assert resp.status_code == 400
    assert_failure_page(
        resp, logs, "unexpected identity provider", "issuer_mismatch", oidc.issued_secrets()
    )
    assert sso.sign_in(oidc).status_code == 400
    assert oidc.idp.requests.all("token") == []
    assert len(oidc.idp.requests.all("discovery")) == 1
    assert users_and_identities() == (0, 0)
    assert sso.client.get("/account").status_code == 302
    # The first failed sign-in; the second, from the same address within the minute, is only
    # logged (at most one audit row per source a minute).
    assert count(AuditEvent) == 1


def test_without_a_discovery_document_iss_is_not_required(oidc, sso):
    """Discovery cannot be fetched: a callback without iss still works, and the failure is
    remembered so the next sign-ins do not ask again."""
    oidc.idp.faults.set("discovery", "status", 404)
    oidc.idp.faults.set("authorize", "no_iss", times=2)
    assert sso.sign_in(oidc).headers["Location"] == "/"
    sso.client.post("/logout")
    assert sso.sign_in(oidc).headers["Location"] == "/"
    assert len(oidc.idp.requests.all("discovery")) == 1


def test_a_system_without_issuer_never_fetches_discovery(ams, sso):
    """Systems without an Issuer (an AMS) are not asked for a discovery document."""
    assert sso.sign_in(ams).headers["Location"] == "/"
    assert not [r for r in ams.idp.requests.all() if "well-known" in r.path]
