"""Migrations build the schema from empty on SQLite and PostgreSQL, and match the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from portal import create_app
from portal.extensions import db
from portal.models import AuthSystem
from portal.services.settings_snapshot import compile_system
from portal.sso.engine import ProfileRequest
from tests.support.database import is_postgres, scratch_database
from tests.support.keys import TEST_KEY


@pytest.fixture
def empty_database_url(database_url, tmp_path):
    """Yield the URL of a brand-new empty database of the same kind as the suite's."""
    if not is_postgres(database_url):
        yield "sqlite:///" + str(tmp_path / "empty.sqlite3")
        return
    with scratch_database(database_url, prefix="portal_migrations") as url:
        yield url


def test_migrations_apply_from_empty_and_match_models(empty_database_url, tmp_path, monkeypatch):
    """An empty database upgraded by the migrations matches the models (no autogenerate diff)."""
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": empty_database_url, "PORTAL_ENCRYPTION_KEYS": [TEST_KEY]}
    )
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == []
        downgrade(revision="base")
        with db.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
        assert tables == set()
        db.engine.dispose()


_OLD_SYSTEM = sa.text(
    "INSERT INTO auth_systems (type, name, name_key, slug, client_id, client_secret_encrypted,"
    " login_url, token_url, token_method, token_headers, token_body, access_token_path,"
    " profile_url, profile_headers, issuer, jwks_url, scope, logout_url, profile_edit_url,"
    " login_label, login_mode, enabled, trusts_email, trusts_username, created_at, updated_at)"
    " VALUES ('oauth2', :name, :key, :key, 'c', '', 'https://i/a?s=%State%', 'https://i/t',"
    " 'POST', '', '', 'access_token', :url, :headers, '', '', '', '', '', '', 'local_only',"
    " :enabled, :false, :false, '2026-01-01', '2026-01-01')"
)


def test_the_profile_api_of_an_existing_system_becomes_request_1_and_back(
    empty_database_url, tmp_path, monkeypatch
):
    """Upgrade moves profile_url/headers to request 1 (the engine sees the same request);
    downgrade moves request 1 back; a system without a Profile API gets no request."""
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": empty_database_url, "PORTAL_ENCRYPTION_KEYS": [TEST_KEY]}
    )
    url, headers = "https://i/userinfo?x=%ClientID%", "Authorization: Bearer %Token%"
    with app.app_context():
        upgrade(revision="0006")
        common = {"enabled": True, "false": False, "headers": ""}
        db.session.execute(
            _OLD_SYSTEM, {**common, "name": "Old", "key": "old", "url": url, "headers": headers}
        )
        db.session.execute(_OLD_SYSTEM, {**common, "name": "Bare", "key": "bare", "url": ""})
        db.session.commit()

        upgrade()
        old = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == "old"))
        bare = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == "bare"))
        assert compile_system(old).sso_config.profile_requests == (
            ProfileRequest(url=url, method="GET", headers=headers, body=""),
        )
        assert bare.profile_requests == []
        assert (old.profile_url, old.profile_headers) == (url, headers)
        db.session.remove()

        downgrade(revision="0006")
        rows = db.session.execute(
            sa.text("SELECT slug, profile_url, profile_headers FROM auth_systems ORDER BY slug")
        ).all()
        assert [tuple(r) for r in rows] == [("bare", "", ""), ("old", url, headers)]
        assert "profile_requests" not in sa.inspect(db.engine).get_table_names()
        db.session.remove()
        db.engine.dispose()


_SYSTEM_AT_0009 = sa.text(
    "INSERT INTO auth_systems (type, name, name_key, slug, client_id, client_secret_encrypted,"
    " login_url, token_url, token_method, token_headers, token_body, access_token_path,"
    " issuer, jwks_url, scope, logout_url, profile_edit_url, login_label, login_mode, enabled,"
    " trusts_email, trusts_username, created_at, updated_at)"
    " VALUES ('oauth2', :name, :key, :key, 'c', '', 'https://i/a?s=%State%', 'https://i/t',"
    " 'POST', '', '', 'access_token', '', '', '', '', '', '', 'local_only', :false, :false,"
    " :false, '2026-01-01', '2026-01-01')"
)


def test_existing_systems_keep_signing_in_as_before_after_0010_and_back(
    empty_database_url, tmp_path, monkeypatch
):
    """Upgrade to 0010 gives an existing system re-check off, a 60-minute grace period and no
    Logoff API, so its sessions keep no tokens; downgrade drops the columns and the table."""
    from portal.services.membership_recheck import keeps_tokens

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": empty_database_url, "PORTAL_ENCRYPTION_KEYS": [TEST_KEY]}
    )
    with app.app_context():
        upgrade(revision="0009")
        db.session.execute(_SYSTEM_AT_0009, {"name": "Old", "key": "old", "false": False})
        db.session.commit()

        upgrade()
        old = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == "old"))
        settings = compile_system(old)
        assert (old.recheck_minutes, old.grace_minutes) == (0, 60)
        assert (old.logoff_url, old.logoff_method, old.logoff_headers, old.logoff_body) == (
            "",
            "POST",
            "",
            "",
        )
        assert not keeps_tokens(settings)
        db.session.remove()

        downgrade(revision="0009")
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("auth_systems")}
        assert not columns & {"recheck_minutes", "grace_minutes", "logoff_url"}
        assert "sso_sessions" not in sa.inspect(db.engine).get_table_names()
        db.session.remove()
        db.engine.dispose()


def test_existing_mapping_rules_and_restriction_are_unchanged_after_0012_and_back(
    empty_database_url, tmp_path, monkeypatch
):
    """Upgrade to 0012 keeps a system's rules and status restriction as they were and adds no
    access rule and no manager role; downgrade drops the new columns and keeps the rules."""
    from portal.services.group_mapping import new_account_refusal, sign_in_refusal

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": empty_database_url, "PORTAL_ENCRYPTION_KEYS": [TEST_KEY]}
    )
    with app.app_context():
        upgrade(revision="0010")
        db.session.execute(_SYSTEM_AT_0009, {"name": "Old", "key": "old", "false": False})
        system_id = db.session.scalar(sa.text("SELECT id FROM auth_systems WHERE slug = 'old'"))
        db.session.execute(
            sa.text(
                "INSERT INTO member_groups (name, name_key, description, created_at)"
                " VALUES ('Gold', 'gold', '', '2026-01-01')"
            )
        )
        group_id = db.session.scalar(sa.text("SELECT id FROM member_groups"))
        db.session.execute(
            sa.text(
                'INSERT INTO group_rules (auth_system_id, kind, "values", values_display,'
                " group_id, created_at) VALUES (:s, 'groups_contains', '[\"gold\"]',"
                " '[\"GOLD\"]', :g, '2026-01-01')"
            ),
            {"s": system_id, "g": group_id},
        )
        db.session.execute(
            sa.text(
                "INSERT INTO group_mapping_settings (auth_system_id, restrict_sign_in,"
                " allowed_statuses, allowed_statuses_display, deny_message, group_object_key)"
                " VALUES (:s, :true, '[\"active\"]', '[\"Active\"]', 'Renew first.', '')"
            ),
            {"s": system_id, "true": True},
        )
        db.session.commit()

        upgrade()
        old = db.session.scalar(sa.select(AuthSystem).where(AuthSystem.slug == "old"))
        policy = compile_system(old).group_policy
        assert [(r.kind, r.values, r.group_id) for r in policy.rules] == [
            ("groups_contains", frozenset({"gold"}), group_id)
        ]
        assert (policy.allowed_email_domains, policy.required_claim) == (frozenset(), "")
        assert policy.existing_accounts_only is False
        active = {"membership_status": "Active", "email": "a@anywhere.test"}
        assert sign_in_refusal(compile_system(old), active, {}) is None
        lapsed = sign_in_refusal(compile_system(old), {"membership_status": "Lapsed"}, {})
        assert lapsed is not None and lapsed.message == "Renew first."
        assert new_account_refusal(compile_system(old)) is None
        db.session.remove()

        downgrade(revision="0010")
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("group_mapping_settings")}
        assert not columns & {"allowed_email_domains", "required_claim", "existing_accounts_only"}
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM group_rules")).scalar() == 1
        db.session.remove()
        db.engine.dispose()
