"""OpenID Connect Back-Channel Logout 1.0: the provider POSTs a logout token, the member's
sessions through that system end at their next request; any other token is refused (400,
JSON ``error``) and changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.devidp.oidc_authority import _new_key
from portal.extensions import db
from portal.models import AuditEvent, Identity, ProviderSessionEnd, SSOSession, UsedToken
from portal.services import audit
from portal.urls import backchannel_logout_url_for
from tests.auth.test_throttling import first_limit
from tests.support.providers import CLIENT_ID, SSO, Provider, reconfigure

EVENT = "http://schemas.openid.net/event/backchannel-logout"


def is_signed_in(client: FlaskClient) -> bool:
    """Tell whether the member's next request is still signed in (/account is members-only)."""
    return client.get("/account").status_code == 200


def logout_path(provider: Provider) -> str:
    return f"/sso/{provider.slug}/backchannel-logout"


def post_logout(client: FlaskClient, provider: Provider, token: str):
    """POST a logout token as the provider does (form-encoded, server to server)."""
    return client.post(logout_path(provider), data={"logout_token": token})


def jane_subject() -> str:
    return db.session.scalar(sa.select(Identity.subject))


def jane_sids(oidc: Provider) -> list[str]:
    return oidc.idp.session_ids["jdoe"]


def nothing_written() -> bool:
    """Tell whether no logout was recorded: no used jti, no ended session, no audit event."""
    kinds = db.session.scalars(sa.select(AuditEvent.kind)).all()
    return (
        db.session.scalar(sa.select(sa.func.count()).select_from(UsedToken)) == 0
        and db.session.scalar(sa.select(sa.func.count()).select_from(ProviderSessionEnd)) == 0
        and audit.PROVIDER_LOGOUT not in kinds
    )


@pytest.fixture
def signed_in(oidc: Provider, sso: SSO, client: FlaskClient) -> FlaskClient:
    """Jane, signed in through the loopback OpenID provider (which names a sid)."""
    resp = sso.sign_in(oidc)
    assert resp.status_code == 302, f"the sign-in answered {resp.status_code}"
    assert is_signed_in(client)
    return client


def test_the_form_shows_the_back_channel_logout_url(oidc: Provider):
    """The URL a manager registers at the provider is generated from the system's slug."""
    assert backchannel_logout_url_for(oidc.slug) == (
        f"http://localhost/sso/{oidc.slug}/backchannel-logout"
    )


def test_a_logout_token_for_the_member_signs_them_out_at_their_next_request(
    oidc: Provider, signed_in: FlaskClient, app: Flask
):
    """The provider logs Jane out (sub): 200, never cached; her next page is signed out."""
    token = oidc.idp.make_logout_token(CLIENT_ID, sub=jane_subject())

    resp = post_logout(app.test_client(), oidc, token)

    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    account = signed_in.get("/account", follow_redirects=True)
    assert "/login" in account.request.path
    assert "identity provider ended your session" in account.get_data(as_text=True)
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.kind == audit.PROVIDER_LOGOUT))
    assert event is not None and event.auth_system_id == oidc.system.id


def test_a_logout_by_sub_ends_every_session_of_the_member_through_that_system(
    oidc: Provider, signed_in: FlaskClient, app: Flask
):
    """Jane on her laptop and her phone: a logout naming her (sub only) ends both."""
    phone = app.test_client()
    SSO(phone).sign_in(oidc)
    assert is_signed_in(phone)

    post_logout(app.test_client(), oidc, oidc.idp.make_logout_token(CLIENT_ID, sub=jane_subject()))

    assert not is_signed_in(signed_in)
    assert not is_signed_in(phone)


def test_a_logout_by_sid_ends_only_that_provider_session(
    oidc: Provider, signed_in: FlaskClient, app: Flask
):
    """A token naming only the phone's provider session (sid) signs out the phone alone."""
    phone = app.test_client()
    SSO(phone).sign_in(oidc)
    laptop_sid, phone_sid = jane_sids(oidc)

    resp = post_logout(
        app.test_client(), oidc, oidc.idp.make_logout_token(CLIENT_ID, sid=phone_sid)
    )

    assert resp.status_code == 200
    assert not is_signed_in(phone)
    assert is_signed_in(signed_in), f"the laptop's session ({laptop_sid}) was ended too"


def test_the_member_can_sign_in_again_after_a_back_channel_logout(
    oidc: Provider, signed_in: FlaskClient, sso: SSO, app: Flask
):
    """The logout ends the sessions it names, not the account: a new sign-in works."""
    post_logout(app.test_client(), oidc, oidc.idp.make_logout_token(CLIENT_ID, sub=jane_subject()))
    assert not is_signed_in(signed_in)

    sso.sign_in(oidc)

    assert is_signed_in(signed_in)


def test_a_token_for_someone_portal_does_not_know_is_accepted_and_ends_nothing(
    oidc: Provider, signed_in: FlaskClient, app: Flask
):
    """A valid token for another person: 200 (the spec's success), Jane stays signed in."""
    resp = post_logout(app.test_client(), oidc, oidc.idp.make_logout_token(CLIENT_ID, sub="nobody"))

    assert resp.status_code == 200
    assert is_signed_in(signed_in)


def _impostor(idp: Any) -> dict[str, Any]:
    return {"key": _new_key(idp.kid)}  # the provider's kid, someone else's key


#: Forged or malformed logout tokens: (name, keyword arguments of make_logout_token).
ATTACKS: list[tuple[str, Any]] = [
    (
        "signed by another key under the provider's kid",
        lambda idp, sub: {"sub": sub, **_impostor(idp)},
    ),
    ("unsigned (alg none)", lambda idp, sub: {"sub": sub, "header": {"alg": "none"}}),
    (
        "HS256 signed with the public key's text",
        lambda idp, sub: {"sub": sub, "header": {"alg": "HS256"}},
    ),
    ("for another audience", lambda idp, sub: {"sub": sub, "claims": {"aud": "another-client"}}),
    (
        "from another issuer",
        lambda idp, sub: {"sub": sub, "claims": {"iss": "https://evil.example"}},
    ),
    (
        "carrying a nonce (an ID token shape)",
        lambda idp, sub: {"sub": sub, "claims": {"nonce": "n-1"}},
    ),
    ("without the events claim", lambda idp, sub: {"sub": sub, "drop": ("events",)}),
    (
        "with another event",
        lambda idp, sub: {"sub": sub, "claims": {"events": {"urn:other:event": {}}}},
    ),
    ("without a jti", lambda idp, sub: {"sub": sub, "drop": ("jti",)}),
    ("without iat", lambda idp, sub: {"sub": sub, "drop": ("iat",)}),
    ("expired", lambda idp, sub: {"sub": sub, "claims": {"iat": 1_000_000, "exp": 1_000_100}}),
    (
        "issued an hour ago",
        lambda idp, sub: {"sub": sub, "claims": {"iat": _ago(3600), "exp": None}, "drop": ("exp",)},
    ),
    ("issued in the future", lambda idp, sub: {"sub": sub, "claims": {"iat": _ago(-3600)}}),
    ("naming neither sub nor sid", lambda idp, sub: {}),
    ("typed as an access token", lambda idp, sub: {"sub": sub, "header": {"typ": "at+jwt"}}),
]


def _ago(seconds: int) -> int:
    import time

    return int(time.time()) - seconds


@pytest.mark.parametrize("name, attack", ATTACKS, ids=[name for name, _ in ATTACKS])
def test_a_forged_or_malformed_logout_token_is_refused_and_changes_nothing(
    oidc: Provider, signed_in: FlaskClient, app: Flask, caplog, name: str, attack
):
    """The attacker's token: 400 with a JSON error, Jane still signed in, nothing recorded."""
    caplog.set_level(logging.INFO)
    kwargs = attack(oidc.idp, jane_subject())
    if kwargs.get("header", {}).get("alg") == "HS256":
        token = _hs256_with_public_key(oidc, kwargs["sub"])
    else:
        token = oidc.idp.make_logout_token(CLIENT_ID, **kwargs)

    resp = post_logout(app.test_client(), oidc, token)

    assert resp.status_code == 400, f"{name}: answered {resp.status_code}"
    assert resp.get_json()["error"] == "invalid_request"
    assert resp.headers["Cache-Control"] == "no-store"
    assert is_signed_in(signed_in), f"{name}: Jane was signed out"
    assert nothing_written(), f"{name}: something was recorded"
    assert token not in caplog.text and token not in resp.get_data(as_text=True)


def _hs256_with_public_key(oidc: Provider, sub: str) -> str:
    """The algorithm-confusion attack: HMAC keyed with the provider's public RSA key."""
    import json

    from joserfc import jwt
    from joserfc.jwk import OctKey

    public = json.dumps(oidc.idp.jwks()["keys"][0]).encode()
    claims = {
        "iss": oidc.idp.issuer,
        "aud": CLIENT_ID,
        "iat": _ago(0),
        "jti": "hs-1",
        "sub": sub,
        "events": {EVENT: {}},
    }
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(public), algorithms=["HS256"])


def test_an_id_token_posted_as_a_logout_token_is_refused(
    oidc: Provider, signed_in: FlaskClient, app: Flask
):
    """Jane's own ID token (signed by the provider, for Portal) is no logout token."""
    member = oidc.idp.members.get("jdoe")
    id_token = oidc.idp.make_id_token(member, CLIENT_ID, "nonce-1")

    resp = post_logout(app.test_client(), oidc, id_token)

    assert resp.status_code == 400
    assert is_signed_in(signed_in)
    assert nothing_written()


def test_a_replayed_logout_token_is_refused(oidc: Provider, signed_in: FlaskClient, app: Flask):
    """The same token (same jti) twice: the second answer is 400 and records nothing more."""
    token = oidc.idp.make_logout_token(CLIENT_ID, sub=jane_subject())
    attacker = app.test_client()
    assert post_logout(attacker, oidc, token).status_code == 200
    ended = db.session.scalar(sa.select(sa.func.count()).select_from(ProviderSessionEnd))

    replay = post_logout(attacker, oidc, token)

    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_request"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ProviderSessionEnd)) == ended
    assert db.session.scalar(sa.select(sa.func.count()).select_from(UsedToken)) == 1


def test_a_logout_token_sent_as_json_or_missing_is_refused(
    oidc: Provider, signed_in: FlaskClient, app: Flask
):
    """The spec's request is form-encoded ``logout_token``; anything else is a 400."""
    token = oidc.idp.make_logout_token(CLIENT_ID, sub=jane_subject())
    other = app.test_client()

    as_json = other.post(logout_path(oidc), json={"logout_token": token})
    empty = other.post(logout_path(oidc), data={})

    assert as_json.status_code == 400 and empty.status_code == 400
    assert is_signed_in(signed_in)
    assert nothing_written()


def test_a_logout_token_for_another_system_does_not_end_sessions_here(
    oidc: Provider, signed_in: FlaskClient, app: Flask, create_auth_system
):
    """A token valid for the OIDC system, posted to another system's URL, is refused."""
    other = create_auth_system(
        name="Other IdP", issuer="https://other.example", jwks_url=oidc.idp.jwks_url
    )
    token = oidc.idp.make_logout_token(CLIENT_ID, sub=jane_subject())

    resp = app.test_client().post(
        f"/sso/{other.slug}/backchannel-logout", data={"logout_token": token}
    )

    assert resp.status_code == 400
    assert is_signed_in(signed_in)
    assert nothing_written()


def test_the_logout_url_needs_no_csrf_token(oidc: Provider, app_config: dict, signed_in, app):
    """The provider has no form of ours: with CSRF protection on, its POST still works."""
    app.config["WTF_CSRF_ENABLED"] = True
    token = oidc.idp.make_logout_token(CLIENT_ID, sub=jane_subject())

    resp = post_logout(app.test_client(), oidc, token)

    assert resp.status_code == 200
    assert not is_signed_in(signed_in)


def test_a_flood_of_forged_logout_tokens_is_throttled_but_valid_ones_never_count(
    oidc: Provider, app: Flask
):
    """From one address: valid logouts all pass; forged ones stop at the limit with 429."""
    allowed = first_limit(app, "PORTAL_RATELIMIT_SSO_INITIATE")
    sender = app.test_client()

    valid = [
        post_logout(sender, oidc, oidc.idp.make_logout_token(CLIENT_ID, sub=f"m{n}")).status_code
        for n in range(allowed + 2)
    ]
    forged = [post_logout(sender, oidc, "forged").status_code for _ in range(allowed + 2)]

    assert valid == [200] * (allowed + 2)
    assert forged == [400] * allowed + [429, 429]


def test_a_back_channel_logout_leaves_a_local_session_of_the_member_alone(
    oidc: Provider, signed_in: FlaskClient, app: Flask
):
    """Only sessions through that system end: Jane's password sign-in elsewhere continues."""
    from portal.models import User

    user = db.session.scalar(sa.select(User))
    user.set_password("a local password 123")
    db.session.commit()
    desk = app.test_client()
    desk.post("/login", data={"email": user.email, "password": "a local password 123"})
    assert is_signed_in(desk)

    post_logout(app.test_client(), oidc, oidc.idp.make_logout_token(CLIENT_ID, sub=jane_subject()))

    assert not is_signed_in(signed_in)
    assert is_signed_in(desk)


def test_used_jtis_are_forgotten_once_their_tokens_could_no_longer_be_accepted(
    oidc: Provider, app: Flask
):
    """The single-use store does not grow for ever: expired entries go at the next logout."""
    from datetime import UTC, datetime, timedelta

    db.session.add(UsedToken(digest="0" * 64, expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    db.session.commit()

    post_logout(app.test_client(), oidc, oidc.idp.make_logout_token(CLIENT_ID, sub="someone"))

    digests = db.session.scalars(sa.select(UsedToken.digest)).all()
    assert len(digests) == 1 and digests[0] != "0" * 64


def _kept_token_rows() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(SSOSession))


def test_a_logout_by_sub_drops_the_tokens_kept_for_those_sessions(
    oidc: Provider, app: Flask, client: FlaskClient, sso: SSO
):
    """The provider ends every session of Jane: the refresh tokens Portal kept for them go too.

    Kept tokens are only of use to a live session; a provider that logged the member out
    should not leave a refresh token behind in Portal's database.
    """
    reconfigure(oidc, recheck_minutes=15)
    sso.sign_in(oidc)
    phone = app.test_client()
    SSO(phone).sign_in(oidc)
    assert _kept_token_rows() == 2

    post_logout(app.test_client(), oidc, oidc.idp.make_logout_token(CLIENT_ID, sub=jane_subject()))

    db.session.expire_all()
    assert _kept_token_rows() == 0
    assert not is_signed_in(client)


def test_a_logout_by_sid_drops_that_sessions_tokens_at_its_next_request(
    oidc: Provider, app: Flask, client: FlaskClient, sso: SSO
):
    """One provider session ends (sid): its kept tokens go at its sign-out; the other's stay."""
    reconfigure(oidc, recheck_minutes=15)
    sso.sign_in(oidc)
    phone = app.test_client()
    SSO(phone).sign_in(oidc)
    laptop_sid = jane_sids(oidc)[0]

    post_logout(app.test_client(), oidc, oidc.idp.make_logout_token(CLIENT_ID, sid=laptop_sid))
    assert not is_signed_in(client)

    db.session.expire_all()
    assert _kept_token_rows() == 1
    assert is_signed_in(phone)
