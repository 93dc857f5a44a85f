"""Each process's settings snapshot: a change saved anywhere is used by the next sign-in.

Two apps on one database stand for two workers (or two instances): the first has the system in
its snapshot, the second saves a change, and the first's very next sign-in uses the change.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask

from portal import create_app
from portal.extensions import db
from portal.models import (
    AuthSystem,
    GroupMappingSettings,
    LoginAttempt,
    MemberGroup,
    ProfileParamRow,
    SettingsVersion,
    User,
)
from portal.services import login_attempts
from portal.services.settings_snapshot import read_version
from portal.sso.fields import LOGIN_LOCAL_AND_REMOTE
from tests.support.providers import add_member, reconfigure


@pytest.fixture
def system(create_auth_system):
    return create_auth_system(
        name="Snapshot IdP", scope="openid email", login_mode=LOGIN_LOCAL_AND_REMOTE
    )


@pytest.fixture
def other_instance(app_config) -> Iterator[Flask]:
    """Return a second app on the same database: another worker, or another instance."""
    other = create_app(app_config)
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def start_url(client, slug: str) -> str:
    resp = client.get(f"/sso/{slug}/login")
    assert resp.status_code == 302, resp.status_code
    return resp.headers["Location"]


def scope_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["scope"][0]


def test_a_change_saved_by_another_instance_is_used_by_the_next_sign_in(
    app, client, system, other_instance
):
    """Instance A has the system cached; B changes the scope; A's next start sends the new one."""
    assert scope_of(start_url(client, system.slug)) == "openid email"
    with other_instance.app_context():
        saved = db.session.get(AuthSystem, system.id)
        saved.scope = "openid email profile groups"
        db.session.commit()
    assert scope_of(start_url(client, system.slug)) == "openid email profile groups"


def test_a_system_disabled_elsewhere_cannot_be_started_here_any_more(
    app, client, system, other_instance
):
    """Disabling through another instance: the next start here is refused, nothing recorded."""
    start_url(client, system.slug)
    with other_instance.app_context():
        db.session.get(AuthSystem, system.id).enabled = False
        db.session.commit()
    resp = client.get(f"/sso/{system.slug}/login")
    assert resp.status_code == 404
    assert "not enabled" in resp.get_data(as_text=True)
    # The start here began on its outdated snapshot: the attempt it wrote is gone again.
    assert attempts_of(system) == 1


def attempts_of(system) -> int:
    db.session.remove()
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.auth_system_id == system.id)
    )


def test_a_start_on_settings_changed_elsewhere_leaves_one_attempt_and_the_new_url(
    app, client, system, other_instance
):
    """The start reads no version of its own: the attempt's INSERT does. A start begun on an
    outdated snapshot is started again on the current one; its first attempt is deleted, and the
    browser only ever sees the login URL of the current settings."""
    start_url(client, system.slug)
    with other_instance.app_context():
        saved = db.session.get(AuthSystem, system.id)
        saved.login_url = saved.login_url.replace("/authorize?", "/v2/auth?")
        db.session.commit()
    url = start_url(client, system.slug)
    assert url.startswith("https://idp.example.com/v2/auth?")
    assert attempts_of(system) == 2
    # The attempt that stayed is the one the browser was sent with: its callback claims it.
    state = parse_qs(urlsplit(url).query)["state"][0]
    claimed = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.state_hash == login_attempts._digest(state))
    )
    assert claimed == 1


def test_every_kind_of_settings_change_moves_the_version(app, system, create_auth_system):
    """Rows, parameters, rules, mapping settings, groups, and a bulk update all bump it."""
    seen = [read_version()]

    def changed() -> bool:
        db.session.commit()
        seen.append(read_version())
        return seen[-1] != seen[-2]

    system.param("email").path = "mail"
    assert changed()
    group = MemberGroup(name="Gold", name_key="gold", description="")
    db.session.add(group)
    assert changed()
    db.session.add(GroupMappingSettings(auth_system_id=system.id, default_group_id=group.id))
    assert changed()
    db.session.execute(
        sa.update(GroupMappingSettings)
        .where(GroupMappingSettings.default_group_id == group.id)
        .values(default_group_id=None)
    )
    assert changed()
    db.session.delete(group)
    assert changed()


def test_a_change_rolled_back_leaves_the_version_alone(app, system):
    """Only a committed change moves the version: an edit abandoned halfway is never seen."""
    before = read_version()
    system.scope = "openid never-saved"
    db.session.flush()
    db.session.rollback()
    assert read_version() == before
    assert db.session.get(SettingsVersion, 1).version == before


# -- the callback: the settings version comes with the claim of its login attempt ---------------


def test_a_system_disabled_elsewhere_during_a_sign_in_refuses_its_callback_here(
    app, oidc, sso, other_instance
):
    """A started the sign-in (the system is in its snapshot); B disables the system while the
    member is at the provider; A's callback is refused before the code is redeemed."""
    callback = sso.authorize(oidc, "jdoe")
    with other_instance.app_context():
        db.session.get(AuthSystem, oidc.system.id).enabled = False
        db.session.commit()

    resp = sso.callback(callback)

    assert resp.status_code == 404
    assert "not enabled" in resp.get_data(as_text=True)
    assert oidc.idp.requests.all("token") == [], "the code was redeemed anyway"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_a_setting_changed_elsewhere_during_a_sign_in_is_used_by_its_callback_here(
    app, oidc, sso, other_instance
):
    """B turns on 'Provider must supply' for a claim the provider does not send while the
    member is at the provider: A's callback uses the new rule and refuses, with no account."""
    callback = sso.authorize(oidc, "jdoe")
    with other_instance.app_context():
        param = db.session.scalar(
            sa.select(ProfileParamRow).where(
                ProfileParamRow.auth_system_id == oidc.system.id,
                ProfileParamRow.field == "first_name",
            )
        )
        param.path = "no_such_claim"
        param.must_supply = True
        db.session.commit()

    resp = sso.callback(callback)

    assert resp.status_code != 302, "the callback signed the member in with the old settings"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_a_callback_here_finishes_a_sign_in_of_a_system_enabled_after_this_process_looked(
    app, client, oidc, sso, other_instance
):
    """A's snapshot still has the system disabled; B enables it and the member starts there;
    the callback reaching A signs the member in (an outdated snapshot never refuses)."""
    with app.app_context():
        db.session.get(AuthSystem, oidc.system.id).enabled = False
        db.session.commit()
    assert client.get(f"/sso/{oidc.slug}/login").status_code == 404  # A caches it disabled
    with other_instance.app_context():
        db.session.get(AuthSystem, oidc.system.id).enabled = True
        db.session.commit()
        other = other_instance.test_client()
        start = other.get(f"/sso/{oidc.slug}/login")
    assert start.status_code == 302
    back = urlsplit(oidc.idp.authorize_redirect(start.headers["Location"], "jdoe"))
    # The same browser (its cookie) reaches A for the callback.
    client.set_cookie("session", other.get_cookie("session").value, domain="localhost")

    resp = client.get(f"{back.path}?{back.query}")

    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    assert db.session.scalar(sa.select(User.username).where(User.username == "jdoe")) == "jdoe"


def test_a_system_created_again_under_the_same_name_signs_members_in_at_once(
    app, client, oidc, sso, other_instance
):
    """A's snapshot still holds the deleted system's id for the slug; a member who started at
    B reaches A's callback, which claims the attempt under the new system and signs them in."""
    assert sso.sign_in(oidc, "jdoe").status_code == 302  # A's snapshot has the system
    client.post("/logout")
    old_id = oidc.system.id
    reconfigure(oidc, scope="openid email profile")
    assert oidc.system.id != old_id
    add_member(oidc.idp, "newcomer")
    with other_instance.app_context():
        other = other_instance.test_client()
        start = other.get(f"/sso/{oidc.slug}/login")
    assert start.status_code == 302
    back = urlsplit(oidc.idp.authorize_redirect(start.headers["Location"], "newcomer"))
    client.set_cookie("session", other.get_cookie("session").value, domain="localhost")

    resp = client.get(f"{back.path}?{back.query}")

    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    assert db.session.scalar(sa.select(User.username).where(User.username == "newcomer"))
