"""Shared fixtures: an app and a clean database per test, a client, an auth helper, factories.

The suite runs on SQLite by default and on PostgreSQL when ``PORTAL_TEST_DATABASE_URL`` is set:
then each run creates its own scratch database on that server and drops it at the end, so two
runs given the same URL do not meet. The schema is built once per run by the real migrations;
each test starts from empty tables. Helpers live in ``tests/support``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal import create_app
from portal.devidp import AMSProvider, OIDCProvider
from portal.extensions import db
from portal.models import ROLE_MANAGER, ROLE_MEMBER, AuthSystem, ProfileParamRow, Team, User
from portal.sso.discovery import get_discovery_cache
from portal.sso.idtoken import get_jwks_cache
from tests.support.accounts import MANAGER_PASSWORD, MEMBER_PASSWORD, AuthActions
from tests.support.auth_system_form import valid_form_data
from tests.support.database import normalize, scratch_database
from tests.support.keys import TEST_KEY
from tests.support.providers import (
    CLIENT_ID,
    CLIENT_SECRET,
    SSO,
    Provider,
    ams_system,
    jane,
    oidc_system,
)


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "PORTAL_ENCRYPTION_KEYS": [TEST_KEY]})
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the URL of this run's own test database, migrated from empty once per run."""
    server_url = os.environ.get("PORTAL_TEST_DATABASE_URL")
    if not server_url:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite3")
        _migrate(url)
        yield url
        return
    with scratch_database(normalize(server_url)) as url:
        _migrate(url)
        yield url


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
        "RATELIMIT_STORAGE_URI": "portal-memory://",
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


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    """Return the sign-in helper."""
    return AuthActions(client)


@pytest.fixture
def manager_client(client: FlaskClient, auth: AuthActions, manager: User) -> FlaskClient:
    """Return the test client, signed in as the community manager."""
    auth.login_manager()
    return client


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


@pytest.fixture
def form_data() -> dict[str, Any]:
    """Return the fields of a valid Add a New Authentication System submission."""
    return valid_form_data()


# --------------------------------------------------------------------------- loopback providers


@pytest.fixture
def fresh_provider_caches() -> Iterator[None]:
    """Forget key sets and discovery documents before and after a test: each test's provider
    has its own keys on its own port."""
    get_jwks_cache().clear()
    get_discovery_cache().clear()
    yield
    get_jwks_cache().clear()
    get_discovery_cache().clear()


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
            "oidc", idp, lambda **over: oidc_system(create_auth_system, idp, **over)
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
        provider = Provider("ams", idp, lambda **over: ams_system(create_auth_system, idp, **over))
        provider.configure()
        yield provider


@pytest.fixture(params=["oidc", "ams"])
def provider(request) -> Provider:
    """Each loopback provider in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def sso(client) -> SSO:
    """Return the SSO flow driver."""
    return SSO(client)


@pytest.fixture
def logs(caplog):
    """Capture INFO and up from every logger."""
    caplog.set_level(logging.INFO)
    return caplog
