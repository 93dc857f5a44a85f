"""/healthz and /readyz: what a load balancer asks before sending an instance traffic."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask_migrate import upgrade

from portal import create_app
from portal.extensions import db
from tests.support.database import normalize, scratch_database

#: The test Redis (tests/auth/test_throttling_storage.py uses the same server).
REDIS_URL = "redis://127.0.0.1:6379/4"
#: Nothing listens here: connecting is refused at once.
CLOSED_PORT = 9


@contextmanager
def database_at(revision: str, tmp_path) -> Iterator[str]:
    """Yield the URL of a fresh database migrated up to ``revision`` (on the suite's server)."""
    server_url = os.environ.get("PORTAL_TEST_DATABASE_URL")
    if server_url:
        with scratch_database(normalize(server_url), prefix="portal_ready") as url:
            yield url
    else:
        yield "sqlite:///" + str(tmp_path / f"at-{revision}.sqlite3")


def migrated_app(app_config: dict[str, Any], url: str, revision: str):
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(revision=revision)
        db.session.remove()
    return app


def test_healthz_answers_without_touching_anything(app, client, member, auth):
    """The process answers 200 JSON, sets no cookie even for a signed-in browser."""
    auth.login(member.email)
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}
    assert "Set-Cookie" not in resp.headers
    assert resp.headers["Cache-Control"] == "no-store"


def test_healthz_answers_even_when_the_database_is_gone(app_config):
    """Alive is not ready: /healthz does no I/O, so a dead database does not fail it."""
    app = create_app(
        {
            **app_config,
            "SQLALCHEMY_DATABASE_URI": f"postgresql+psycopg://u@127.0.0.1:{CLOSED_PORT}/x",
        }
    )
    assert app.test_client().get("/healthz").status_code == 200


def test_readyz_is_ready_on_a_migrated_database(client):
    """Database answering at the head: 200, and each check says ok."""
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}
    assert "Set-Cookie" not in resp.headers


def test_readyz_names_no_version_and_no_setting(app, client):
    """The answer holds no migration revision, database address or secret."""
    body = client.get("/readyz").get_data(as_text=True)
    for revealing in ("0009", "0008", "sqlite", "postgres", app.config["SECRET_KEY"]):
        assert revealing not in body


def test_readyz_refuses_a_database_behind_the_head(app_config, tmp_path):
    """A database one migration behind the code (upgrade not yet run): 503, schema not at head."""
    with database_at("0008", tmp_path) as url:
        app = migrated_app(app_config, url, "0008")
        try:
            resp = app.test_client().get("/readyz")
            assert resp.status_code == 503
            assert resp.get_json() == {
                "status": "not ready",
                "checks": {"database": "ok", "schema": "not at head"},
            }
            with app.app_context():
                upgrade()
                db.session.remove()
            assert app.test_client().get("/readyz").status_code == 200
        finally:
            with app.app_context():
                db.engine.dispose()


def test_readyz_refuses_a_database_never_migrated(app_config, tmp_path):
    """An empty database (no alembic_version table at all) is not ready."""
    with database_at("none", tmp_path) as url:
        app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
        try:
            resp = app.test_client().get("/readyz")
            assert resp.status_code == 503
            assert resp.get_json()["checks"] == {"database": "ok", "schema": "not at head"}
        finally:
            with app.app_context():
                db.engine.dispose()


def test_readyz_refuses_an_unreachable_database_without_naming_it(app_config, caplog):
    """The database refuses connections: 503, and neither page nor log names its address."""
    url = f"postgresql+psycopg://portal:s3cret-pw@127.0.0.1:{CLOSED_PORT}/portal"
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
    caplog.set_level(logging.WARNING)
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["database"] == "unavailable"
    for text in (resp.get_data(as_text=True), caplog.text):
        assert "s3cret-pw" not in text and "127.0.0.1" not in text
    assert "readyz: database check failed" in caplog.text


def test_readyz_checks_redis_when_it_is_configured(app_config):
    """REDIS_URL set and answering: ready, with redis ok."""
    app = create_app({**app_config, "REDIS_URL": REDIS_URL})
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json()["checks"]["redis"] == "ok"


def test_readyz_refuses_an_unreachable_redis(app_config):
    """REDIS_URL set but Redis down: 503, and its password appears nowhere."""
    url = f"redis://:r3dis-pw@127.0.0.1:{CLOSED_PORT}/0"
    app = create_app({**app_config, "REDIS_URL": url})
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["redis"] == "unavailable"
    assert "r3dis-pw" not in resp.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_are_never_throttled(app_config, path, monkeypatch):
    """A load balancer polling often, under a limit of one request an hour for every page."""
    from portal.extensions import limiter

    # The limiter is shared by every app of the process: the default limit goes after the test.
    manager = limiter.limit_manager
    monkeypatch.setattr(manager, "_default_limits", manager._default_limits)
    app = create_app({**app_config, "RATELIMIT_DEFAULT": "1/hour"})
    client = app.test_client()
    assert [client.get("/login").status_code for _ in range(2)] == [200, 429]
    assert {client.get(path).status_code for _ in range(30)} == {200}


def test_probes_are_answered_over_plain_http_in_production(app_config, monkeypatch):
    """Production redirects pages to https; a probe at the worker's own port is answered."""
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 48)
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEYS", app_config["PORTAL_ENCRYPTION_KEYS"][0])
    monkeypatch.setenv("PORTAL_BASE_URL", "https://portal.example.org")
    config = {k: v for k, v in app_config.items() if k not in ("TESTING", "PORTAL_BASE_URL")}
    app = create_app(config)
    client = app.test_client()
    assert client.get("/login").status_code in (301, 302)
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_get_and_head_only(client, path):
    """HEAD gets the status without a body; a POST is refused, not taken as a probe."""
    head = client.head(path)
    assert head.status_code == 200 and head.data == b""
    post = client.post(path)
    assert post.status_code == 405
    assert post.headers["Allow"] == "GET, HEAD"
