"""A deleted authentication system's id is never given to another one, so the audit log's
system filter never merges two systems (SQLite used to hand the largest deleted id back)."""

from __future__ import annotations

import sqlalchemy as sa
from flask_migrate import upgrade

from portal import create_app
from portal.extensions import db
from portal.models import AuditEvent, AuthSystem
from tests.support.keys import TEST_KEY
from tests.support.pages import screen_rows
from tests.support.rows import events


def test_a_new_system_never_takes_the_id_of_a_deleted_one(manager_client, form_data, audit_page):
    """Create, delete, create again: the second system has a new id and its own audit rows."""
    manager_client.post("/admin/auth-systems/new", data=form_data)
    first = db.session.scalar(sa.select(AuthSystem))
    first_id = first.id
    manager_client.post(f"/admin/auth-systems/{first_id}/delete")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem)) == 0

    manager_client.post("/admin/auth-systems/new", data={**form_data, "name": "Second IdP"})
    second = db.session.scalar(sa.select(AuthSystem))
    assert second.id != first_id

    rows = screen_rows(audit_page(system=str(second.id)))
    assert rows and all("Second IdP" in row for row in rows)
    assert not any("System deleted" in row for row in rows)
    assert [e.auth_system_id for e in events("system.deleted")] == [first_id]


def test_migrating_an_old_sqlite_database_starts_ids_above_every_audited_one(tmp_path, monkeypatch):
    """After the upgrade, ids start above the largest id the audit log already names."""
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    url = "sqlite:///" + str(tmp_path / "old.sqlite3")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "PORTAL_ENCRYPTION_KEYS": [TEST_KEY]})
    with app.app_context():
        upgrade(revision="0004")
        # An old site: system 7 was deleted (only the audit log remembers it).
        db.session.add(AuditEvent(kind="system.deleted", auth_system_id=7, details={}))
        db.session.commit()
        upgrade()
        db.session.execute(
            sa.text(
                "INSERT INTO auth_systems (type, name, name_key, slug, client_id,"
                " client_secret_encrypted, login_url, token_url, token_method, token_headers,"
                " token_body, access_token_path, issuer, jwks_url,"
                " scope, logout_url, profile_edit_url, login_label, login_mode, enabled,"
                " created_at, updated_at) VALUES ('oauth2', 'New', 'new', 'new', 'c', '',"
                " 'https://i/a', 'https://i/t', 'POST', '', '', 'access_token', '', '',"
                " '', '', '', '', 'local_only', 0, '2026-01-01', '2026-01-01')"
            )
        )
        new_id = db.session.scalar(sa.text("SELECT id FROM auth_systems WHERE slug = 'new'"))
        assert new_id == 8
        db.session.remove()
        db.engine.dispose()
