"""Sign-ins the platform starts at the Sign-in Initiation URL, written as the attacks.

Two shapes reach ``/sso/<slug>/initiate``: iMIS's POSTed ``refresh_token`` (redeemed only when
the system opts in: the POST carries no state, so it is login CSRF's door) and OpenID Connect
third-party-initiated login (``iss``, ``login_hint``, ``target_link_uri``), which only starts
a normal, browser-bound sign-in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from portal.devidp import IMISProvider
from portal.extensions import db
from portal.models import AuthSystem, GroupMembership, LoginAttempt, MemberGroup, User
from portal.services.audit_changes import diff_auth_system_data
from portal.services.auth_systems import auth_system_data
from portal.services.group_mapping import add_rule
from portal.services.transfer import export_auth_system, import_auth_system
from portal.sso.fields import DEFAULT_REFRESH_TOKEN_BODY
from tests.auth.test_platform_presets import _system_from_preset
from tests.auth.test_throttling import first_limit
from tests.support.failures import REFERENCE, assert_failure_page
from tests.support.providers import CLIENT_ID, CLIENT_SECRET, Provider, jane
from tests.support.rows import users_and_identities

REFUSED = "this sign-in method does not accept that"
REFUSED_BY_IDP = "The identity provider refused the sign-in request."


@pytest.fixture
def imis(app) -> Iterator[Provider]:
    """A running iMIS fake with Jane, and a system saved from the iMIS preset."""
    idp = IMISProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=["http://localhost/sso/imis/callback"],
        members=[jane()],
    )
    with idp:
        replacements = {"https://{your-imis-site}": idp.url, "{sso-login-page}": "sso-login"}
        provider = Provider("imis", idp, lambda: _system_from_preset("imis", replacements, "iMIS"))
        provider.configure()
        yield provider


def _post_token(client, provider: Provider, token: str):
    return client.post(f"/sso/{provider.slug}/initiate", data={"refresh_token": token})


def _refuse_platform_start(system: AuthSystem) -> None:
    system.platform_start = False
    db.session.commit()


def _group(name: str) -> MemberGroup:
    group = MemberGroup(name=name, name_key=name.casefold(), description="")
    db.session.add(group)
    db.session.commit()
    return group


def _logs(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


# -- the token POST (iMIS) ---------------------------------------------------------------------


def test_an_imis_member_signs_in_by_the_token_post_with_groups_mapped(app, imis, client, logs):
    """iMIS POSTs Jane's refresh token: Portal redeems it at /token, reads her party and groups,
    signs her in, and the landing page names her. CSRF protection is on, as in production:
    the platform's POST carries no token of ours."""
    app.config["WTF_CSRF_ENABLED"] = True
    webinars = _group("Webinars")
    add_rule(imis.system, "groups_contains", "Webinars", webinars.id)
    token = imis.idp.issue_refresh_token("jdoe")

    resp = _post_token(client, imis, token)

    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    assert resp.headers["Location"] == "/"
    landing = client.get("/").get_data(as_text=True)
    assert "You are now signed in as Jane Doe." in landing
    db.session.expire_all()
    user = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    assert (user.first_name, user.last_name, user.username) == ("Jane", "Doe", "jdoe")
    groups = db.session.scalars(
        sa.select(GroupMembership.group_id).where(GroupMembership.user_id == user.id)
    ).all()
    assert groups == [webinars.id]
    assert users_and_identities() == (1, 1)
    (redeem,) = imis.idp.requests.all("token")
    assert parse_qs(redeem.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [token],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }
    assert [r.endpoint for r in imis.idp.requests.all()][-3:] == ["user", "party", "group_member"]
    assert "outcome=success" in _logs(logs)
    assert token not in _logs(logs)


def test_a_token_post_replaces_whoever_was_signed_in_and_says_so(imis, client, auth, member):
    """Someone else is signed in in this browser: the platform's sign-in replaces the session,
    and the landing page says who is signed in now."""
    auth.login_member()
    assert client.get("/account").status_code == 200

    resp = _post_token(client, imis, imis.idp.issue_refresh_token("jdoe"))

    assert resp.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "You are now signed in as Jane Doe. The earlier session in this browser has ended." in (
        page
    )


def test_a_token_post_for_the_member_already_signed_in_ends_no_other_session(imis, client):
    """The same member again (a second click on the platform's link): no other session ended."""
    assert _post_token(client, imis, imis.idp.issue_refresh_token("jdoe")).status_code == 302
    client.get("/")  # the first landing page shows its message

    resp = _post_token(client, imis, imis.idp.issue_refresh_token("jdoe"))

    assert resp.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "You are now signed in as Jane Doe." in page
    assert "earlier session" not in page


def test_a_token_post_to_a_system_that_did_not_opt_in_is_refused_and_writes_nothing(
    imis, client, logs
):
    """Login CSRF: a forged POST to a system without the flag never reaches the provider."""
    _refuse_platform_start(imis.system)
    token = imis.idp.issue_refresh_token("jdoe")

    resp = _post_token(client, imis, token)

    assert resp.status_code == 403
    assert_failure_page(resp, logs, REFUSED, "platform_start_refused", [token, CLIENT_SECRET])
    assert imis.idp.requests.all("token") == []
    assert users_and_identities() == (0, 0)


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda idp: idp.issue_refresh_token("jdoe", ttl=-1), id="expired"),
        pytest.param(lambda idp: "imisrt-forged-Xq7Lm2", id="never-issued"),
    ],
)
def test_an_invalid_or_expired_refresh_token_fails_with_a_reference_and_writes_nothing(
    imis, client, logs, make_token
):
    """iMIS refuses the token: the failure page has a reference, the token is in no log line,
    and no account or identity is left behind."""
    token = make_token(imis.idp)

    resp = _post_token(client, imis, token)

    assert resp.status_code == 502
    assert_failure_page(resp, logs, REFUSED_BY_IDP, "oauth_error", [token, CLIENT_SECRET])
    assert users_and_identities() == (0, 0)
    assert client.get("/account").status_code == 302  # nobody signed in


def test_an_empty_refresh_token_is_refused_before_any_call(imis, client, logs):
    """A POST with an empty refresh_token fails on the usual page; iMIS is not called."""
    resp = _post_token(client, imis, "")

    assert resp.status_code >= 400
    assert REFERENCE.search(resp.get_data(as_text=True))
    assert imis.idp.requests.all("token") == []
    assert users_and_identities() == (0, 0)


def test_the_token_post_limit_answers_429_after_the_configured_count(app, imis, client):
    """A flood of forged POSTs from one address stops at PORTAL_RATELIMIT_SSO_INITIATE."""
    _refuse_platform_start(imis.system)
    allowed = first_limit(app, "PORTAL_RATELIMIT_SSO_INITIATE")

    statuses = [_post_token(client, imis, "x").status_code for _ in range(allowed + 2)]

    assert statuses == [403] * allowed + [429, 429]


# -- third-party-initiated login (OpenID Connect Core 1.0 §4) ----------------------------------


@pytest.fixture
def hinted(oidc) -> Provider:
    """The loopback OIDC system with %LoginHint% in its login URL."""
    system = oidc.system
    system.login_url += "&login_hint=%LoginHint%"
    db.session.commit()
    return oidc


def _initiate(client, provider: Provider, **params: str):
    return client.get(f"/sso/{provider.slug}/initiate", query_string=params)


def test_a_third_party_initiated_login_starts_a_fresh_browser_bound_sign_in(hinted, client, sso):
    """The right iss sends the browser to the provider with a new state and the login hint;
    the state works in this browser only."""
    resp = _initiate(client, hinted, iss=hinted.idp.issuer, login_hint="jane.doe@example.org")

    assert resp.status_code == 302
    location = resp.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(hinted.idp.authorize_url)
    assert query["login_hint"] == ["jane.doe@example.org"]
    (attempt,) = db.session.scalars(sa.select(LoginAttempt)).all()
    assert len(query["state"][0]) >= 40
    back = hinted.idp.authorize_redirect(location, "jdoe")
    parts = urlsplit(back)
    callback = f"{parts.path}?{parts.query}"
    other_browser = client.application.test_client()
    assert other_browser.get(callback).status_code == 400
    assert users_and_identities() == (0, 0)


def test_without_a_login_hint_the_placeholder_is_empty(hinted, client):
    """%LoginHint% is empty when the initiation named nobody."""
    resp = _initiate(client, hinted, iss=hinted.idp.issuer)

    assert parse_qs(urlsplit(resp.headers["Location"]).query, keep_blank_values=True)[
        "login_hint"
    ] == [""]


@pytest.mark.parametrize("iss", ["https://evil.example", ""], ids=["other", "missing"])
def test_a_third_party_initiated_login_with_the_wrong_iss_is_refused(hinted, client, logs, iss):
    """An initiation naming another issuer (or none) starts nothing."""
    resp = _initiate(client, hinted, iss=iss)

    assert resp.status_code == 400
    assert_failure_page(
        resp, logs, "unexpected identity provider", "issuer_mismatch", [CLIENT_SECRET]
    )
    assert db.session.scalars(sa.select(LoginAttempt)).all() == []


@pytest.mark.parametrize(
    ("target", "lands_on"),
    [
        ("https://evil.example/phish", "/"),
        ("//evil.example/phish", "/"),
        ("/library", "/library"),
        ("http://localhost/account", "/account"),
    ],
)
def test_target_link_uri_is_honoured_only_on_this_site(hinted, client, target, lands_on):
    """An off-site target_link_uri is ignored (lands on /); a path of this site is honoured."""
    resp = _initiate(client, hinted, iss=hinted.idp.issuer, target_link_uri=target)
    back = hinted.idp.authorize_redirect(resp.headers["Location"], "jdoe")
    parts = urlsplit(back)

    done = client.get(f"{parts.path}?{parts.query}")

    assert done.status_code == 302
    assert done.headers["Location"] == lands_on


# -- the form, export/import and audit ----------------------------------------------------------


def test_the_form_shows_the_sign_in_initiation_url_read_only_with_copy(manager_client, oidc):
    """Beside the Redirect URL: the Sign-in Initiation URL, read-only, with a Copy button."""
    page = manager_client.get(f"/admin/auth-systems/{oidc.system.id}/edit").get_data(as_text=True)

    assert "Sign-in Initiation URL" in page
    field = re.search(r'<input[^>]*id="initiate_url"[^>]*>', page, re.S).group(0)
    assert f'value="http://localhost/sso/{oidc.slug}/initiate"' in field
    assert "readonly" in field
    assert 'data-copy-target="initiate_url"' in page
    assert "Accept sign-ins started by the platform" in page
    assert "Refresh Token Post Body" in page


def test_export_import_and_the_audit_diff_carry_the_new_fields(imis):
    """The flag and the refresh body travel in an export and show in the audit diff."""
    doc = export_auth_system(imis.system)
    assert doc["auth_system"]["platform_start"] is True
    assert doc["auth_system"]["refresh_token_body"] == DEFAULT_REFRESH_TOKEN_BODY
    doc["auth_system"]["name"] = "iMIS copy"
    copy = import_auth_system(doc, client_secret=CLIENT_SECRET)
    assert copy.platform_start is True
    assert copy.refresh_token_body == DEFAULT_REFRESH_TOKEN_BODY

    before = auth_system_data(copy)
    after = {**before, "platform_start": False, "refresh_token_body": "grant_type=x"}
    changed = {c["label"] for c in diff_auth_system_data(before, after)}
    assert changed == {"Accept sign-ins started by the platform", "Refresh Token Post Body"}
