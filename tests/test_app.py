"""The app factory, configuration from the environment, and local sign-in."""

import pytest

from portal.config import ConfigError, load_config


def test_production_refuses_to_start_without_secret_key(tmp_path):
    """In production, a missing SECRET_KEY stops the app with a clear message."""
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(str(tmp_path), {"PORTAL_ENV": "production"})


def test_production_requires_encryption_keys(tmp_path):
    """In production, a missing PORTAL_ENCRYPTION_KEYS stops the app."""
    with pytest.raises(ConfigError, match="PORTAL_ENCRYPTION_KEYS"):
        load_config(str(tmp_path), {"PORTAL_ENV": "production", "SECRET_KEY": "x" * 32})


def test_development_defaults(tmp_path):
    """Outside production, a development key and an SQLite database under instance/ are used."""
    config = load_config(str(tmp_path), {})
    assert config["SECRET_KEY"]
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/portal.sqlite3"
    assert len(config["PORTAL_ENCRYPTION_KEYS"]) == 1


def test_environment_variables_are_read(tmp_path):
    """DATABASE_URL, PORTAL_BASE_URL and comma-separated keys come from the environment."""
    config = load_config(
        str(tmp_path),
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "PORTAL_BASE_URL": "https://portal.example.org/",
            "PORTAL_ENCRYPTION_KEYS": "a, b",
            "PORTAL_HTTP_READ_TIMEOUT": "3",
        },
    )
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"
    assert config["PORTAL_BASE_URL"] == "https://portal.example.org"
    assert config["PORTAL_ENCRYPTION_KEYS"] == ["a", "b"]
    assert config["PORTAL_HTTP_READ_TIMEOUT"] == 3.0


def test_home_page_renders(client):
    """The home page invites an anonymous visitor to sign in."""
    response = client.get("/")
    assert response.status_code == 200
    assert b"Sign in" in response.data


def test_local_login_and_logout(client, auth, member):
    """A member signs in with email and password, sees their name, and signs out."""
    response = auth.login("MEMBER@example.com", "member-password-1")
    assert response.status_code == 302
    assert "member" in client.get("/account").get_data(as_text=True)
    auth.logout()
    assert client.get("/account").status_code == 302


def test_wrong_password_is_refused(client, auth, member):
    """A wrong password keeps the visitor on the form with a message."""
    response = auth.login("member@example.com", "nope-nope-nope")
    assert response.status_code == 200
    assert "email address or password is not correct" in response.get_data(as_text=True)
    assert client.get("/account").status_code == 302


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "\\\\evil.example", "https://evil.example", "/\\evil.example", "/\tevil"],
)
def test_next_is_only_a_same_site_path(client, member, target):
    """`next` never sends the browser to another site."""
    response = client.post(
        "/login",
        data={"email": "member@example.com", "password": "member-password-1", "next": target},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_next_same_site_path_is_followed(client, member):
    """A same-site `next` path is where the member lands after signing in."""
    response = client.post(
        "/login",
        data={
            "email": "member@example.com",
            "password": "member-password-1",
            "next": "/account?x=1",
        },
    )
    assert response.headers["Location"] == "/account?x=1"


def test_session_is_fresh_at_sign_in(client, member):
    """Sign-in replaces whatever the session held before (no fixation)."""
    with client.session_transaction() as sess:
        sess["planted"] = "by-attacker"
    client.post("/login", data={"email": "member@example.com", "password": "member-password-1"})
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess.get("_user_id")


def test_csrf_is_enforced_on_forms(app_config, database_url, tmp_path, monkeypatch):
    """With CSRF on (as in production), a form post without the token is refused."""
    from portal import create_app

    app_config["WTF_CSRF_ENABLED"] = True
    app = create_app(app_config)
    response = app.test_client().post(
        "/login", data={"email": "member@example.com", "password": "x"}
    )
    assert response.status_code == 400
    assert "Form expired" in response.get_data(as_text=True)
