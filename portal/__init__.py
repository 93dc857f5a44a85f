"""Portal: a community site whose sign-in is driven by configuration."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from inspect import iscoroutinefunction
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Return the folder of ``templates``, ``static`` or ``migrations``.

    An installed wheel carries them inside the package (``portal/templates``...: see
    pyproject.toml); a checkout, editable install included, keeps them at the top level.
    """
    packaged = PACKAGE / name
    return packaged if packaged.is_dir() else ROOT / name


@functools.lru_cache(maxsize=512)
def _is_coroutine_function(func: Callable[..., Any]) -> bool:
    return iscoroutinefunction(func)


class PortalFlask(Flask):
    """Flask, asking once per handler whether it is a coroutine function.

    Flask asks it of every before/after-request and teardown handler and the view, on every
    request (about fifteen times a request here, 1.5 % of a sign-in's CPU in a profile); the
    answer never changes for a function.
    """

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``func``, or a synchronous wrapper when it is an ``async def`` function."""
        try:
            is_async = _is_coroutine_function(func)
        except TypeError:  # an unhashable callable: ask Flask
            return super().ensure_sync(func)
        return self.async_to_sync(func) if is_async else func


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create and configure the Portal application."""
    app = PortalFlask(
        __name__,
        instance_path=os.environ.get("PORTAL_INSTANCE_PATH") or _default_instance_path(),
        template_folder=str(resource_dir("templates")),
        static_folder=str(resource_dir("static")),
    )
    _configure(app, test_config)
    _init_logging(app)
    _init_extensions(app)
    _register_blueprints(app)

    from portal import cli, errors, ops

    ops.init_app(app)  # /healthz, /readyz, /metrics in front; every request timed
    errors.init_app(app)
    cli.init_app(app)
    return app


def _default_instance_path() -> str | None:
    """Return ``instance/`` of a checkout; None (Flask's ``<prefix>/var/portal-instance``)
    for an installed wheel, never a folder inside site-packages."""
    return None if (PACKAGE / "templates").is_dir() else str(ROOT / "instance")


def _configure(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Load the settings, refuse a debugger in production, and trust the proxy if told to."""
    from portal.config import ConfigError, load_config

    app.config.update(load_config(app.instance_path))
    if test_config:
        app.config.update(test_config)
    if str(app.config["SQLALCHEMY_DATABASE_URI"]).startswith("sqlite"):
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        # The most recently used connection first: its page cache is the warm one.
        options["pool_use_lifo"] = True
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    if app.config["PORTAL_ENV"] == "production" and app.debug:
        raise ConfigError("FLASK_DEBUG (or DEBUG) must be off when PORTAL_ENV=production.")
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if app.config["PORTAL_TRUST_PROXY"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)  # type: ignore[method-assign]


def _init_logging(app: Flask) -> None:
    """Log at INFO, with one line per request."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Alembic announces each of its plugins at INFO on every command: not a manager's concern.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # One line per sign-in (portal.auth.sso_views); each call to a provider only at DEBUG
    # (portal.sso.http). httpx and httpcore no longer carry provider calls; kept quiet should
    # an extension use them.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from portal import request_log

    request_log.init_app(app)


def _init_extensions(app: Flask) -> None:
    """Bind the extensions, the security headers and the session checks to ``app``."""
    from portal.extensions import csrf, db, limiter, login_manager, mail, migrate

    db.init_app(app)
    from portal import database
    from portal.services import settings_snapshot  # noqa: F401  (its session events)

    database.init_app(app)
    mail.init_app(app)
    migrate.init_app(app, db, directory=str(resource_dir("migrations")))
    csrf.init_app(app)
    # Each app gets its own storage here: fresh memory, or a client of the shared Redis.
    from portal import ratelimit_storage  # noqa: F401  (registers portal-memory://)

    limiter.init_app(app)
    _drop_middleware_limit_check(app, limiter)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see this page."
    login_manager.login_message_category = "info"

    from portal import headers

    headers.init_app(app)

    from portal import models  # noqa: F401  (register the models with the metadata)
    from portal.auth import sessions

    sessions.init_app(app)


def _drop_middleware_limit_check(app: Flask, limiter: Any) -> None:
    """Remove Flask-Limiter's before-request check when nothing is left for it to check.

    Every Portal limit is a route decorator (`portal/services/throttle.py`), which checks
    its own limits when the view runs. The before-request hook Flask-Limiter also installs
    evaluates default and application-wide limits only, and Portal configures neither; run
    on every request, it resolved an empty list at about a tenth of a millisecond each time.
    """
    manager = limiter.limit_manager
    if manager.default_limits or manager.application_limits:
        return
    hooks = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit in hooks:
        hooks.remove(limiter._check_request_limit)


def _register_blueprints(app: Flask) -> None:
    """Register the site, sign-in and admin blueprints."""
    from portal.admin import bp as admin_bp
    from portal.auth import bp as auth_bp
    from portal.site import bp as site_bp

    app.register_blueprint(site_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(admin_bp, url_prefix="/admin")
