"""One error page for every status code, and a rollback on server errors."""

from __future__ import annotations

import math

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import Forbidden, HTTPException, RequestEntityTooLarge

from portal.extensions import db
from portal.services import throttle

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Not allowed", "You do not have permission to open this page."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Not allowed", "This page cannot be used that way."),
    413: ("Too large", "What you sent is larger than this site accepts."),
    429: (
        "Too many requests",
        "There were too many requests from you in a short time, so this page is paused for "
        "you for a while. Wait, then try again.",
    ),
    500: ("Something went wrong", "An unexpected error happened. Please try again later."),
}


class AccountDisabled(Forbidden):
    """A disabled account tried to sign in (locally or through SSO)."""

    title = "Account disabled"
    description = (
        "This account is disabled, so it cannot sign in. If you think this is a mistake, "
        "contact the community team."
    )


def wait_text(seconds: int) -> str:
    """Say a wait in words: "about 40 seconds", "about 3 minutes", "about 2 hours"."""
    if seconds < 60:
        return f"about {seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    return f"about {math.ceil(minutes / 60)} hours"


def render_error(
    status: int,
    title: str | None = None,
    message: str | None = None,
    *,
    retry_after: int | None = None,
    **extra,
):
    """Render the error page for ``status``; ``retry_after`` (seconds) also sets the header."""
    default_title, default_message = MESSAGES.get(status, ("Error", "Something went wrong."))
    page = render_template(
        "errors/error.html",
        status=status,
        title=title or default_title,
        message=message or default_message,
        retry_after_text=wait_text(retry_after) if retry_after else None,
        **extra,
    )
    if retry_after:
        return page, status, {"Retry-After": str(retry_after)}
    return page, status


def init_app(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return render_error(
            400, "Form expired", "The form was out of date. Go back, reload the page and try again."
        )

    @app.errorhandler(429)
    def too_many_requests(exc: HTTPException):
        # Flask-Limiter's own description names the limit ("30 per 1 minute"): not for people.
        return render_error(429, retry_after=throttle.current_retry_after() or 60)

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
