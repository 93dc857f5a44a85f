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
from portal.models import AuthSystem, GroupMappingSettings, MemberGroup, SettingsVersion
from portal.services.settings_snapshot import read_version
from portal.sso.fields import LOGIN_LOCAL_AND_REMOTE


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
