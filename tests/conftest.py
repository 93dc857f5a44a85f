"""Shared fixtures: an app and a clean database per test, a client, an auth helper, factories.

The suite runs on SQLite by default and on PostgreSQL when ``PORTAL_TEST_DATABASE_URL`` is set.
The schema is built once per run by the real migrations; each test starts from empty tables.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from portal import create_app
from portal.extensions import db
from portal.models import ROLE_MANAGER, ROLE_MEMBER, AuthSystem, ProfileParamRow, Team, User

TEST_KEY = Fernet.generate_key().decode()
MANAGER_PASSWORD = "manager-password-1"
MEMBER_PASSWORD = "member-password-1"


def _normalize(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Return the URL of the test database, migrated from empty once per run."""
    url = os.environ.get("PORTAL_TEST_DATABASE_URL")
    if url:
        url = _normalize(url)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite3")
    from flask_migrate import upgrade

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "PORTAL_ENCRYPTION_KEYS": [TEST_KEY]})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


def is_postgres(url: str) -> bool:
    """Tell whether the test database is PostgreSQL."""
    return url.startswith("postgresql")


@pytest.fixture
def app_config(database_url: str, tmp_path) -> dict[str, Any]:
    """Return the configuration of the app under test (tests may change it before `app`)."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "WTF_CSRF_ENABLED": False,
        "PORTAL_ENCRYPTION_KEYS": [TEST_KEY],
        "PORTAL_BASE_URL": "http://localhost",
        "SERVER_NAME": None,
        # Fresh rate-limit counters for every app, even when REDIS_URL is set around the suite.
        "RATELIMIT_STORAGE_URI": "memory://",
    }


@pytest.fixture
def app(app_config: dict[str, Any], tmp_path, monkeypatch) -> Iterator[Flask]:
    """Create an app on a clean database."""
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app(app_config)
    with app.app_context():
        yield app
        db.session.remove()
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Return a test client."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    """Return a CLI runner."""
    return app.test_cli_runner()


@pytest.fixture
def create_user(app: Flask) -> Callable[..., User]:
    """Return a factory of local users."""
    counter = {"n": 0}

    def make(
        email: str | None = None,
        password: str = MEMBER_PASSWORD,
        role: str = ROLE_MEMBER,
        username: str | None = None,
        **fields: Any,
    ) -> User:
        counter["n"] += 1
        email = (email or f"user{counter['n']}@example.com").lower()
        username = username or email.split("@")[0]
        user = User(
            email=email, username=username, username_key=username.lower(), role=role, **fields
        )
        user.set_password(password)
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def manager(create_user) -> User:
    """Return a community manager."""
    return create_user(email="manager@example.com", password=MANAGER_PASSWORD, role=ROLE_MANAGER)


@pytest.fixture
def member(create_user) -> User:
    """Return a member."""
    return create_user(email="member@example.com", password=MEMBER_PASSWORD)


class AuthActions:
    """Sign in and out through the real local sign-in form."""

    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def login(self, email: str = "manager@example.com", password: str = MANAGER_PASSWORD):
        return self._client.post("/login", data={"email": email, "password": password})

    def login_manager(self):
        return self.login("manager@example.com", MANAGER_PASSWORD)

    def login_member(self):
        return self.login("member@example.com", MEMBER_PASSWORD)

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    """Return the sign-in helper."""
    return AuthActions(client)


@pytest.fixture
def create_team(app: Flask) -> Callable[[str], Team]:
    """Return a factory of teams."""

    def make(name: str) -> Team:
        team = Team(name=name, name_key=name.lower())
        db.session.add(team)
        db.session.commit()
        return team

    return make


@pytest.fixture
def create_auth_system(app: Flask) -> Callable[..., AuthSystem]:
    """Return a factory of saved authentication systems (bypassing the form)."""

    def make(
        name: str = "Example IdP",
        client_secret: str = 's3cr3t+/=&"value',
        params: dict[str, dict[str, Any]] | None = None,
        **fields: Any,
    ) -> AuthSystem:
        from portal.services.auth_systems import slugify, store_client_secret

        values: dict[str, Any] = {
            "client_id": "portal-client",
            "login_url": "https://idp.example.com/authorize?response_type=code&client_id=%ClientID%"
            "&redirect_uri=%RedirectURL%&state=%State%&scope=%Scope%",
            "token_url": "https://idp.example.com/token",
            "token_body": "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
            "&client_id=%ClientID%&client_secret=%ClientSecret%",
            "access_token_path": "access_token",
            "login_label": f"Sign in with {name}",
            "enabled": True,
        }
        values.update(fields)
        system = AuthSystem(name=name, name_key=name.lower(), slug=slugify(name), **values)
        store_client_secret(system, client_secret)
        rows = (
            params
            if params is not None
            else {"user_id": {"path": "sub"}, "email": {"path": "email"}}
        )
        for field, opts in rows.items():
            system.params.append(ProfileParamRow(field=field, **opts))
        db.session.add(system)
        db.session.commit()
        return system

    return make
