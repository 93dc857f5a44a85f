"""Typed failures of the SSO engine, each with a member-facing message and a log detail."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[redacted]"


class SSOError(Exception):
    """Base of every SSO failure.

    `code` is a short machine string, `user_message` words a member understands, and
    `log_detail` what managers see in the log. None of them ever holds a secret, an
    authorization code or a token.
    """

    code = "sso_error"
    default_user_message = "Sign-in with the identity provider failed."

    def __init__(self, log_detail: str = "", *, user_message: str | None = None) -> None:
        self.log_detail = log_detail
        self.user_message = user_message or self.default_user_message
        super().__init__(self._text())

    def _text(self) -> str:
        return f"{self.code}: {self.log_detail}" if self.log_detail else self.code

    def redact(self, secrets: Iterable[str]) -> SSOError:
        """Replace every occurrence of the given secret strings in the messages."""
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        for secret in ordered:
            self.log_detail = self.log_detail.replace(secret, REDACTED)
            self.user_message = self.user_message.replace(secret, REDACTED)
            for attr in ("error", "description", "reason"):
                value = getattr(self, attr, None)
                if isinstance(value, str):
                    setattr(self, attr, value.replace(secret, REDACTED))
        self.args = (self._text(),)
        return self


class ProviderError(SSOError):
    """The callback carried `error=` from the identity provider."""

    code = "provider_error"
    default_user_message = "The identity provider did not complete the sign-in."

    def __init__(self, error: str, description: str | None = None) -> None:
        self.error = error
        self.description = description
        if error == "access_denied":
            user_message = "The sign-in was cancelled or refused at the identity provider."
        else:
            user_message = self.default_user_message
        detail = f"error={error!r}"
        if description:
            detail += f" description={description!r}"
        super().__init__(detail, user_message=user_message)


class StateInvalid(SSOError):
    """The `state` of the callback is unknown, used or expired."""

    code = "state_invalid"
    default_user_message = (
        "This sign-in link has expired or was already used. Please start the sign-in again."
    )


class IssuerMismatch(SSOError):
    """The callback's `iss` is not the configured issuer."""

    code = "issuer_mismatch"
    default_user_message = "The sign-in response came from an unexpected identity provider."


class ProviderUnreachable(SSOError):
    """The identity provider could not be reached."""

    code = "provider_unreachable"
    default_user_message = "The identity provider could not be reached. Please try again later."


class ProviderTimeout(SSOError):
    """The identity provider did not answer in time."""

    code = "provider_timeout"
    default_user_message = "The identity provider took too long to answer. Please try again later."


class ProviderHTTPError(SSOError):
    """The identity provider answered with a non-success HTTP status."""

    code = "provider_http_error"
    default_user_message = "The identity provider answered with an error. Please try again later."

    def __init__(self, status: int, log_detail: str = "") -> None:
        self.status = status
        detail = f"HTTP {status}" + (f" ({log_detail})" if log_detail else "")
        super().__init__(detail)


class ProviderBadResponse(SSOError):
    """The identity provider's answer was not the JSON (or form) expected."""

    code = "provider_bad_response"
    default_user_message = "The identity provider sent an answer we could not understand."


class ResponseTooLarge(SSOError):
    """The identity provider's answer exceeded the size cap."""

    code = "response_too_large"
    default_user_message = "The identity provider sent an answer that was too large."


class OAuthErrorResponse(SSOError):
    """The identity provider answered with an OAuth error document."""

    code = "oauth_error"
    default_user_message = "The identity provider refused the sign-in request."

    def __init__(self, error: str, description: str | None = None, status: int | None = None):
        self.error = error
        self.description = description
        self.status = status
        detail = f"error={error!r}"
        if description:
            detail += f" description={description!r}"
        if status is not None:
            detail += f" (HTTP {status})"
        super().__init__(detail)


class TokenMissing(SSOError):
    """The token response held no access token at the configured path."""

    code = "token_missing"
    default_user_message = "The identity provider did not send an access token."


class IDTokenInvalid(SSOError):
    """The ID token failed verification."""

    code = "id_token_invalid"
    default_user_message = "The identity provider's sign-in token could not be verified."

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SubjectMismatch(SSOError):
    """The profile's `sub` differs from the ID token's `sub`."""

    code = "subject_mismatch"
    default_user_message = "The identity provider returned inconsistent account details."


class RequiredFieldMissing(SSOError):
    """A field the site requires was not supplied by the identity provider."""

    code = "required_field_missing"

    def __init__(self, field_label: str) -> None:
        self.field_label = field_label
        super().__init__(
            f"missing {field_label}",
            user_message=f"The identity provider did not supply your {field_label}.",
        )


class TemplateError(SSOError):
    """A template could not be rendered (bad header line, line break in a header value)."""

    code = "template_error"
    default_user_message = "The sign-in settings for this identity provider are invalid."
