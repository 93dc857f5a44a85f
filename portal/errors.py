"""One error page for every status code, and a rollback on server errors."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import Forbidden, HTTPException, RequestEntityTooLarge

from portal.extensions import db

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Not allowed", "You do not have permission to open this page."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Not allowed", "This page cannot be used that way."),
    413: ("Too large", "What you sent is larger than this site accepts."),
    429: ("Too many requests", "Please wait a moment and try again."),
    500: ("Something went wrong", "An unexpected error happened. Please try again later."),
}


class AccountDisabled(Forbidden):
    """A disabled account tried to sign in (locally or through SSO)."""

    title = "Account disabled"
    description = (
        "This account is disabled, so it cannot sign in. If you think this is a mistake, "
        "contact the community team."
    )


def render_error(status: int, title: str | None = None, message: str | None = None, **extra):
    """Render the error page for ``status``."""
    default_title, default_message = MESSAGES.get(status, ("Error", "Something went wrong."))
    return (
        render_template(
            "errors/error.html",
            status=status,
            title=title or default_title,
            message=message or default_message,
            **extra,
        ),
        status,
    )


def init_app(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return render_error(
            400, "Form expired", "The form was out of date. Go back, reload the page and try again."
        )

    @app.errorhandler(AccountDisabled)
    def account_disabled(exc: AccountDisabled):
        # Whatever the refused sign-in had queued (its audit row) is not saved.
        db.session.rollback()
        return render_error(403, exc.title, exc.description)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        size = f" (at most {limit / 1_048_576:g} MB)" if limit else ""
        return render_error(
            413,
            "Too large",
            f"What you sent is larger than this site accepts{size}, so nothing was saved. "
            "Go back and send a smaller file.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        custom = exc.description != type(exc).description
        message = exc.description if custom else None
        return render_error(status, message=message)

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        db.session.rollback()
        if app.testing:
            raise exc
        app.logger.exception("Unhandled error")
        return render_error(500)
