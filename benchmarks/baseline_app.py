"""The hand-written sign-in a Flask developer would write: what Portal is measured against.

One OAuth 2.0 provider wired in code with Authlib's Flask client (explicit endpoints, PKCE
S256, client_secret_basic, userinfo), a Flask-SQLAlchemy ``User`` table upserted by ``sub``,
Flask-Login, and a landing page that says "You are signed in as <name>". SQLite runs in WAL
mode with a busy timeout, as a careful developer would set it.

Run by ``benchmarks/login_storm.py`` under gunicorn::

    IDP_URL=http://127.0.0.1:9000 DATABASE_URL=sqlite:////tmp/b.db \\
        gunicorn --chdir benchmarks 'baseline_app:create_app()'

Environment: ``IDP_URL`` (the provider's base URL), ``DATABASE_URL`` (default an SQLite file
in the working directory), ``SECRET_KEY``, ``CLIENT_ID``, ``CLIENT_SECRET``.
"""

from __future__ import annotations

import os

from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, url_for
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from flask_sqlalchemy import SQLAlchemy
from markupsafe import escape
from sqlalchemy import event
from sqlalchemy.engine import Engine

db = SQLAlchemy()
login_manager = LoginManager()
oauth = OAuth()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL and a busy timeout: readers never wait for the writer; writers queue, not fail."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


class User(UserMixin, db.Model):
    id = db.Column(db.Integer, primary_key=True)
    sub = db.Column(db.String(255), unique=True, nullable=False)
    username = db.Column(db.String(255))
    email = db.Column(db.String(255))
    first_name = db.Column(db.String(255))
    last_name = db.Column(db.String(255))
    groups = db.Column(db.String(1024))

    @property
    def display_name(self) -> str:
        full = f"{self.first_name or ''} {self.last_name or ''}".strip()
        return full or self.username or self.email or self.sub


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


def upsert_user(info: dict) -> User:
    """Insert or update the member by ``sub`` (two first sign-ins at once: one inserts)."""
    fields = {
        "username": info.get("preferred_username"),
        "email": info.get("email"),
        "first_name": info.get("given_name"),
        "last_name": info.get("family_name"),
        "groups": ",".join(info.get("groups") or []),
    }
    user = db.session.execute(db.select(User).filter_by(sub=info["sub"])).scalar_one_or_none()
    if user is None:
        user = User(sub=info["sub"], **fields)
        db.session.add(user)
        try:
            db.session.commit()
            return user
        except Exception:  # the same member signed in twice at once: the other request inserted
            db.session.rollback()
            user = db.session.execute(db.select(User).filter_by(sub=info["sub"])).scalar_one()
    for key, value in fields.items():
        setattr(user, key, value)
    db.session.commit()
    return user


def create_app() -> Flask:
    app = Flask(__name__)
    idp = os.environ.get("IDP_URL", "http://127.0.0.1:9000").rstrip("/")
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY", "baseline-dev-secret"),
        SQLALCHEMY_DATABASE_URI=os.environ.get("DATABASE_URL", "sqlite:///baseline.sqlite3"),
    )
    db.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "login"
    oauth.init_app(app)
    oauth.register(
        "idp",
        client_id=os.environ.get("CLIENT_ID", "bench-client"),
        client_secret=os.environ.get("CLIENT_SECRET", "bench-secret"),
        authorize_url=f"{idp}/authorize",
        access_token_url=f"{idp}/token",
        userinfo_endpoint=f"{idp}/userinfo",
        client_kwargs={
            "scope": "email profile",
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic",
            "timeout": 10,
        },
    )
    with app.app_context():
        db.create_all()

    @app.get("/healthz")
    def healthz():
        return "ok"

    @app.get("/login")
    def login():
        return oauth.idp.authorize_redirect(url_for("callback", _external=True))

    @app.get("/callback")
    def callback():
        token = oauth.idp.authorize_access_token()
        info = oauth.idp.userinfo(token=token)
        login_user(upsert_user(dict(info)))
        return redirect(url_for("home"))

    @app.get("/")
    @login_required
    def home():
        name = escape(current_user.display_name)
        return (
            "<!doctype html><title>Home</title>"
            f"<p>You are signed in as <strong>{name}</strong>.</p>"
        )

    return app
