"""Public sign-in: local accounts and the SSO flow."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from portal.auth import link_views, provider_views, sso_views, views  # noqa: E402,F401
