"""Production refuses to start with weak or broken settings, naming the variable."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from portal import create_app
from portal.config import ConfigError, load_config

GOOD_KEY = Fernet.generate_key().decode()
PRODUCTION = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": "s" * 48,
    "PORTAL_ENCRYPTION_KEYS": GOOD_KEY,
    "PORTAL_BASE_URL": "https://portal.example.org",
}


def production(**changes: str | None) -> dict[str, str]:
    env = {**PRODUCTION, **changes}
    return {k: v for k, v in env.items() if v is not None}


def test_a_sound_production_configuration_loads(tmp_path):
    """The reference production environment passes every check."""
    config = load_config(str(tmp_path), production())
    assert config["PORTAL_ENV"] == "production"
    assert config["SESSION_COOKIE_SECURE"] and config["SESSION_COOKIE_NAME"] == "__Host-session"


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"SECRET_KEY": "a"}, "SECRET_KEY"),
        ({"SECRET_KEY": "x" * 31}, "SECRET_KEY"),
        ({"PORTAL_ENCRYPTION_KEYS": "not-a-fernet-key"}, "PORTAL_ENCRYPTION_KEYS entry 1"),
        ({"PORTAL_ENCRYPTION_KEYS": f"{GOOD_KEY},c2hvcnQ="}, "PORTAL_ENCRYPTION_KEYS entry 2"),
        ({"PORTAL_BASE_URL": "http://portal.example.org"}, "PORTAL_BASE_URL"),
        ({"PORTAL_BASE_URL": None}, "PORTAL_BASE_URL"),
        ({"FLASK_DEBUG": "1"}, "FLASK_DEBUG"),
        ({"FLASK_DEBUG": "true"}, "FLASK_DEBUG"),
    ],
)
def test_production_refuses_to_start(tmp_path, changes, variable):
    """Each weak setting stops the configuration with an error naming its variable."""
    with pytest.raises(ConfigError, match=variable) as caught:
        load_config(str(tmp_path), production(**changes))
    # A rejected key is never quoted back (error messages end up in logs).
    assert "not-a-fernet-key" not in str(caught.value)


def test_the_same_settings_are_fine_outside_production(tmp_path):
    """Development accepts a short key, http and debug (it is not exposed)."""
    config = load_config(
        str(tmp_path),
        {"SECRET_KEY": "a", "PORTAL_BASE_URL": "http://127.0.0.1:5000", "FLASK_DEBUG": "1"},
    )
    assert config["PORTAL_ENV"] == "development"
    assert config["SESSION_COOKIE_NAME"] == "session"


def test_create_app_refuses_production_with_debug(monkeypatch, tmp_path):
    """An app switched to debug by its configuration does not start in production."""
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    with pytest.raises(ConfigError, match="FLASK_DEBUG"):
        create_app({"DEBUG": True})


def test_create_app_refuses_production_with_a_short_secret_key(monkeypatch, tmp_path):
    """create_app, as wsgi.py calls it, stops on a short SECRET_KEY."""
    for name, value in production(SECRET_KEY="a").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app()


@pytest.mark.parametrize(
    "name",
    [
        "PORTAL_MANAGER_IDLE_MINUTES",
        "PORTAL_MANAGER_LIFETIME_HOURS",
        "PORTAL_MEMBER_IDLE_MINUTES",
        "PORTAL_MEMBER_LIFETIME_HOURS",
        "PORTAL_MAX_CONTENT_LENGTH",
    ],
)
@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_lifetimes_and_limits_must_be_positive_numbers(tmp_path, name, value):
    """A session lifetime or the size limit must be a whole number of 1 or more."""
    with pytest.raises(ConfigError, match=name):
        load_config(str(tmp_path), {name: value})


def test_session_lifetime_defaults(tmp_path):
    """Managers: 30 min idle, 12 h in all; members: 4 h idle, 7 days in all."""
    config = load_config(str(tmp_path), {})
    assert config["PORTAL_MANAGER_IDLE_MINUTES"] == 30
    assert config["PORTAL_MANAGER_LIFETIME_HOURS"] == 12
    assert config["PORTAL_MEMBER_IDLE_MINUTES"] == 240
    assert config["PORTAL_MEMBER_LIFETIME_HOURS"] == 168
    assert config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 168 * 3600


def test_each_worker_keeps_a_database_connection_per_thread(tmp_path):
    """PORTAL_THREADS, which gunicorn.conf.py runs per worker, sizes the pool kept open."""
    from portal.config import load_config

    options = load_config(str(tmp_path), {"PORTAL_THREADS": "32"})["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_size"] == 32
    assert load_config(str(tmp_path), {})["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] == 16
