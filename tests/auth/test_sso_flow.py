"""The SSO sign-in flow end to end, against both loopback providers over real HTTP."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from portal.extensions import db
from portal.models import Identity, LoginAttempt, User
from portal.sso.placeholders import basic_auth
from tests.support.providers import CLIENT_ID, CLIENT_SECRET, reconfigure
from tests.support.rows import users_and_identities


def query(url: str) -> dict[str, str]:
    """Return the single-valued query parameters of ``url``."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def only_user() -> User:
    db.session.expire_all()
    users = list(db.session.scalars(sa.select(User)))
    assert len(users) == 1
    return users[0]


def test_start_redirects_to_the_rendered_login_url_with_state_nonce_and_pkce(oidc, sso):
    """The start view records a hashed, browser-bound attempt and redirects to the IdP."""
    resp = sso.start(oidc, next_path="/account")
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(oidc.idp.authorize_url + "?")
    params = query(location)
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == "http://localhost/sso/loopback-oidc/callback"
    assert len(params["state"]) >= 43  # 32 random bytes, base64url
    assert params["nonce"] and params["code_challenge_method"] == "S256"
    attempt = db.session.scalar(sa.select(LoginAttempt))
    assert attempt.state_hash != params["state"] and len(attempt.state_hash) == 64
    assert attempt.nonce == params["nonce"]
    assert attempt.issuer == oidc.idp.issuer
    assert attempt.next_path == "/account"
    assert params["code_challenge"] not in attempt.code_verifier_encrypted


def test_first_login_creates_the_user_and_signs_in(provider, sso, create_team, client):
    """First SSO login creates the account, binds it, joins the onboarding team, signs in."""
    team = create_team("Newcomers")
    provider.system.onboarding_team_id = team.id
    db.session.commit()
    resp = sso.sign_in(provider)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    user = only_user()
    assert (user.email, user.username) == ("jane.doe@example.org", "jdoe")
    assert (user.first_name, user.last_name) == ("Jane", "Doe")
    assert user.membership_status == "Active" and user.membership_type == "Professional"
    assert user.password_hash is None and not user.pending_fields
    assert [t.name for t in user.teams] == ["Newcomers"]
    identity = db.session.scalar(sa.select(Identity))
    assert identity.user_id == user.id and identity.auth_system_id == provider.system.id
    assert "Jane Doe" in client.get("/").get_data(as_text=True)


def test_the_secret_reaches_the_provider_intact(provider, sso):
    """The client secret with + / = & " and non-ASCII survives form, JSON and Basic encoding."""
    sso.sign_in(provider)
    token_request = provider.idp.requests.last("token")
    if provider.kind == "oidc":
        assert token_request.form["client_secret"] == CLIENT_SECRET
        assert token_request.form["code_verifier"]
    else:
        assert token_request.json()["client_secret"] == CLIENT_SECRET


def test_client_secret_basic_works_with_the_oidc_provider(oidc, sso):
    """Token API Headers can carry %BasicAuth% (client_secret_basic) instead of the secret."""
    reconfigure(
        oidc,
        token_headers="Authorization: Basic %BasicAuth%",
        token_body="grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
        "&code_verifier=%CodeVerifier%",
    )
    resp = sso.sign_in(oidc)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    auth = oidc.idp.requests.last("token").headers["Authorization"]
    assert auth == "Basic " + basic_auth(CLIENT_ID, CLIENT_SECRET)
    assert users_and_identities() == (1, 1)


def test_second_login_reuses_the_account_and_refreshes_owned_fields(provider, sso, client):
    """A known (system, User ID) pair signs the same user in; provider-owned fields refresh."""
    reconfigure(provider, params={"first_name": {"must_supply": True}})
    sso.sign_in(provider)
    first = only_user()
    client.post("/logout")
    provider.idp.members.update(
        "jdoe", given_name="Janet", family_name="Smith", membership_status="Lapsed"
    )
    resp = sso.sign_in(provider)
    assert resp.status_code == 302
    user = only_user()
    assert user.id == first.id
    assert users_and_identities() == (1, 1)
    assert user.first_name == "Janet"  # locked: the provider owns it
    assert user.last_name == "Doe"  # not locked: the member's value is kept
    assert user.membership_status == "Lapsed"


def test_next_path_is_honoured_after_sign_in(provider, sso):
    """The `next` given at start is where the member lands."""
    resp = sso.start(provider, next_path="/account")
    back = provider.idp.authorize_redirect(resp.headers["Location"], "jdoe")
    parts = urlsplit(back)
    resp = sso.client.get(f"{parts.path}?{parts.query}")
    assert resp.headers["Location"] == "/account"


def test_upgrade_binds_an_existing_local_account(provider, sso, create_user):
    """A password-less account matching on a trusted upgradable field is bound, not duplicated."""
    local = create_user(email="jane.doe@example.org", username="jane-local")
    local.password_hash = None
    db.session.commit()
    reconfigure(provider, params={"email": {"can_upgrade": True}}, trusts_email=True)
    resp = sso.sign_in(provider)
    assert resp.status_code == 302
    user = only_user()
    assert user.id == local.id
    assert user.username == "jane-local"  # not provider-owned: kept
    identity = db.session.scalar(sa.select(Identity))
    assert identity.user_id == local.id


def test_upgrade_by_username(provider, sso, create_user):
    """Username can be the upgrade field too (case-insensitive), when the system trusts it."""
    local = create_user(email="other@example.org", username="JDoe")
    local.password_hash = None
    db.session.commit()
    reconfigure(provider, params={"username": {"can_upgrade": True}}, trusts_username=True)
    sso.sign_in(provider)
    assert db.session.scalar(sa.select(Identity)).user_id == local.id
    assert users_and_identities() == (1, 1)


def test_conflict_on_email_without_upgrade_changes_nothing(provider, sso, create_user, logs):
    """An email match without 'User can upgrade' ends on a page naming the field."""
    local = create_user(email="jane.doe@example.org", username="jane-local")
    resp = sso.sign_in(provider)
    assert resp.status_code == 409
    page = resp.get_data(as_text=True)
    assert "same Email Address" in page and "nothing was changed" in page
    assert users_and_identities() == (1, 0)
    db.session.refresh(local)
    assert local.username == "jane-local" and local.first_name == ""
    assert "Reference:" in page


def test_conflict_on_username_without_upgrade(provider, sso, create_user):
    """A username match without the option is a conflict naming Username."""
    create_user(email="someone@example.org", username="jdoe")
    resp = sso.sign_in(provider)
    assert resp.status_code == 409
    assert "same Username" in resp.get_data(as_text=True)
    assert users_and_identities() == (1, 0)


def test_conflict_when_upgrade_field_and_another_field_match_different_accounts(
    provider, sso, create_user
):
    """Email upgradable and matching A, username matching B: conflict, nothing changes."""
    create_user(email="jane.doe@example.org", username="a")
    create_user(email="b@example.org", username="jdoe")
    reconfigure(provider, params={"email": {"can_upgrade": True}})
    resp = sso.sign_in(provider)
    assert resp.status_code == 409
    assert "same Username" in resp.get_data(as_text=True)
    assert users_and_identities() == (2, 0)


def test_email_upgrade_refused_when_email_not_verified(oidc, sso, create_user, logs):
    """email_verified false: no upgrade by email (account takeover), clear message."""
    create_user(email="jane.doe@example.org", username="jane-local")
    oidc.idp.members.update("jdoe", email_verified=False)
    reconfigure(oidc, params={"email": {"can_upgrade": True}})
    resp = sso.sign_in(oidc)
    assert resp.status_code == 403
    page = resp.get_data(as_text=True)
    assert "has not verified your email address" in page
    assert users_and_identities() == (1, 0)


def test_must_supply_field_missing_fails_naming_the_field(provider, sso, logs):
    """A missing 'Provider must supply this value' field fails on a page naming it."""
    provider.idp.members.update("jdoe", family_name=None)
    reconfigure(provider, params={"last_name": {"must_supply": True}})
    resp = sso.sign_in(provider)
    assert resp.status_code == 400
    assert "did not supply your Last Name" in resp.get_data(as_text=True)
    assert users_and_identities() == (0, 0)


def test_missing_optional_fields_are_asked_once(provider, sso, client, create_user):
    """Missing last name: 'Complete your profile' before the site; uniqueness checked there."""
    provider.idp.members.update("jdoe", family_name=None)
    resp = sso.sign_in(provider)
    assert resp.headers["Location"] == "/complete-profile"
    assert client.get("/account").headers["Location"] == "/complete-profile"
    page = client.get("/complete-profile").get_data(as_text=True)
    assert "Complete your profile" in page and "Last Name" in page
    resp = client.post("/complete-profile", data={"last_name": ""})
    assert "Last Name is required." in resp.get_data(as_text=True)
    resp = client.post("/complete-profile", data={"last_name": "Doe"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"  # where sign-in was going
    user = only_user()
    assert user.last_name == "Doe" and not user.pending_fields
    assert client.get("/account").status_code == 200
    client.post("/logout")
    resp = sso.sign_in(provider)
    assert resp.headers["Location"] == "/"  # not asked again


def test_complete_profile_checks_username_uniqueness(provider, sso, client, create_user):
    """A username asked on 'Complete your profile' must be free."""
    create_user(email="taken@example.org", username="taken")
    reconfigure(provider, params={"username": {"path": "nothing_here"}})
    sso.sign_in(provider)
    resp = client.post("/complete-profile", data={"username": "Taken"})
    assert "That username is already taken." in resp.get_data(as_text=True)
    resp = client.post("/complete-profile", data={"username": "jane"})
    assert resp.status_code == 302
    assert db.session.scalar(sa.select(User).where(User.username_key == "jane")) is not None


def test_locked_fields_are_read_only_on_the_account_page(provider, sso, client):
    """Supplied must-supply fields are shown read-only and a changed value is refused."""
    reconfigure(provider, params={"email": {"must_supply": True}})
    sso.sign_in(provider)
    page = client.get("/account").get_data(as_text=True)
    assert "Managed by your identity provider." in page
    assert 'name="email"' not in page and 'name="first_name"' in page
    resp = client.post("/account", data={"email": "evil@example.org", "first_name": "J"})
    assert "managed by your identity provider" in resp.get_data(as_text=True)
    user = only_user()
    assert user.email == "jane.doe@example.org" and user.first_name == "Jane"
    resp = client.post("/account", data={"first_name": "Jay"})
    assert resp.status_code == 302
    assert only_user().first_name == "Jay"


def test_account_page_links_to_the_alternate_profile_edit_url(provider, sso, client):
    """'Edit your profile' goes to the provider with %ReturnToURL% back to the account page."""
    sso.sign_in(provider)
    page = client.get("/account").get_data(as_text=True)
    assert "Edit your profile" in page
    assert "http%3A%2F%2Flocalhost%2Faccount" in page


def test_logout_redirects_to_the_alternate_logout_url(provider, sso, client, logs):
    """Logout ends the session, then goes to the provider with %ReturnToURL% (and %IDToken%)."""
    sso.sign_in(provider)
    resp = client.post("/logout")
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(provider.idp.logout_url + "?")
    params = query(location)
    if provider.kind == "oidc":
        assert params["post_logout_redirect_uri"] == "http://localhost/"
        assert params["id_token_hint"] == provider.extra["id_tokens"][-1]
    else:
        assert params["returnUrl"] == "http://localhost/"
    assert client.get("/account").status_code == 302  # signed out locally
    logs_text = "\n".join(r.getMessage() for r in logs.records)
    for token in provider.extra.get("id_tokens", []):
        assert token not in logs_text


def test_logout_without_alternate_logout_url_goes_home(provider, sso, client):
    """No Alternate Logout URL: just the local sign-out."""
    reconfigure(provider, logout_url="")
    sso.sign_in(provider)
    resp = client.post("/logout")
    assert resp.headers["Location"] == "/"


def test_sso_sign_in_starts_a_fresh_session(provider, sso, client):
    """Session values from before the sign-in (fixation) do not survive it."""
    with client.session_transaction() as sess:
        sess["planted"] = "attacker"
    sso.sign_in(provider)
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert "_user_id" in sess
