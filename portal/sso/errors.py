"""The one catalogue of sign-in failures: each error's page status, title, message and retry."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[redacted]"


class SSOError(Exception):
    """Base of every SSO failure.

    `code` is a short machine string, `user_message` words a member understands, and
    `log_detail` what managers see in the log. None of them ever holds a secret, an
    authorization code or a token. The class also says how the failure page looks:
    `page_status` (its HTTP status), `title`, and `retryable` (whether starting the
    sign-in again can help, so the page offers "try again").
    """

    code = "sso_error"
    page_status = 502
    title = "Sign-in failed"
    default_user_message = "Sign-in with the identity provider failed."
    retryable = False
    #: The provider is down or overloaded (not refusing anything): a membership re-check
    #: keeps the member's access for the system's Grace Period instead of signing them out.
    provider_down = False

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


def _error_detail(error: str, description: str | None) -> str:
    """Return the log detail of an OAuth ``error`` and its ``description``."""
    detail = f"error={error!r}"
    if description:
        detail += f" description={description!r}"
    return detail


class ProviderError(SSOError):
    """The callback carried `error=` from the identity provider."""

    code = "provider_error"
    page_status = 400
    title = "Sign-in not completed"
    default_user_message = "The identity provider did not complete the sign-in."
    retryable = True

    def __init__(self, error: str, description: str | None = None) -> None:
        self.error = error
        self.description = description
        if error == "access_denied":
            user_message = "The sign-in was cancelled or refused at the identity provider."
        else:
            user_message = self.default_user_message
        super().__init__(_error_detail(error, description), user_message=user_message)


class StateInvalid(SSOError):
    """The `state` of the callback is unknown, used or expired."""

    code = "state_invalid"
    page_status = 400
    title = "Sign-in link expired"
    default_user_message = (
        "This sign-in link has expired or was already used. Please start the sign-in again."
    )
    retryable = True


class IssuerMismatch(SSOError):
    """The callback's `iss` is not the configured issuer."""

    code = "issuer_mismatch"
    page_status = 400
    default_user_message = "The sign-in response came from an unexpected identity provider."


class PlatformStartRefused(SSOError):
    """A refresh token was POSTed to a system that does not accept sign-ins the platform starts."""

    code = "platform_start_refused"
    page_status = 403
    title = "Sign-in not accepted"
    default_user_message = (
        "This sign-in was started by another site, and this sign-in method does not accept "
        "that. Please sign in from the Sign in page."
    )
    retryable = True


class ProviderUnreachable(SSOError):
    """The identity provider could not be reached."""

    code = "provider_unreachable"
    title = "Identity provider unavailable"
    default_user_message = "The identity provider could not be reached. Please try again later."
    retryable = True
    provider_down = True


class ProviderAddressRefused(ProviderUnreachable):
    """The provider's host is, or resolves to, an address the outbound policy refuses."""

    code = "provider_address_refused"
    default_user_message = (
        "The identity provider is unavailable: this site may not connect to its address. "
        "Please contact the community team."
    )
    # Only the operator's settings can change this answer.
    retryable = False


class ProviderTimeout(SSOError):
    """The identity provider did not answer in time."""

    code = "provider_timeout"
    page_status = 504
    title = "Identity provider unavailable"
    default_user_message = "The identity provider took too long to answer. Please try again later."
    retryable = True
    provider_down = True


class ProviderHTTPError(SSOError):
    """The identity provider answered with a non-success HTTP status."""

    code = "provider_http_error"
    default_user_message = "The identity provider answered with an error. Please try again later."

    def __init__(self, status: int, log_detail: str = "") -> None:
        self.status = status
        self.provider_down = status >= 500 or status == 429
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
        self.provider_down = error in ("temporarily_unavailable", "server_error") or (
            status is not None and (status >= 500 or status == 429)
        )
        detail = _error_detail(error, description)
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


class LogoutTokenInvalid(SSOError):
    """A back-channel logout token failed validation (OpenID Connect Back-Channel Logout 2.6).

    The provider, not a member, sees this one: the answer is a 400 with a JSON ``error``
    (``error`` below, 2.8); ``reason`` names the check that failed, never a claim's value.
    """

    code = "logout_token_invalid"
    page_status = 400
    title = "Logout refused"
    default_user_message = "The logout token could not be verified."

    def __init__(self, reason: str, *, error: str = "invalid_request") -> None:
        self.reason = reason
        self.error = error
        super().__init__(reason)


class SubjectMismatch(SSOError):
    """The profile's `sub` differs from the ID token's `sub`."""

    code = "subject_mismatch"
    default_user_message = "The identity provider returned inconsistent account details."


class RequiredFieldMissing(SSOError):
    """A field the site requires was not supplied by the identity provider."""

    code = "required_field_missing"
    page_status = 400
    title = "Missing profile information"

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


class SettingsUnreadable(SSOError):
    """A stored secret of the system (or attempt) cannot be decrypted with the configured keys."""

    code = "settings_unreadable"
    default_user_message = (
        "Sign-in with this identity provider is not available right now. Please try again "
        "later or contact the community team."
    )


# -- account resolution: the provider's answer was fine, but this site refuses the account ----


class AccountConflict(SSOError):
    """A unique field from the provider matches a local account that may not be upgraded.

    ``label`` is the field's label as members read it (``FIELD_LABEL[field]``).
    """

    code = "account_conflict"
    page_status = 409
    title = "Account already exists"

    def __init__(self, field: str, label: str, log_detail: str = "") -> None:
        self.field = field
        super().__init__(
            log_detail or f"{label} matches an existing account without upgrade",
            user_message=(
                f"An account with the same {label} already exists on this site, and it cannot "
                "be connected to your identity provider account automatically. Please contact "
                "the community team; nothing was changed."
            ),
        )


class EmailNotVerified(SSOError):
    """An upgrade by Email Address was refused: nobody vouches for the provider's email."""

    code = "email_not_verified"
    page_status = 403
    title = "Email address not verified"
    default_user_message = (
        "Your identity provider has not verified your email address, so it cannot be used to "
        "connect to your existing account here. Verify your email address with your identity "
        "provider and sign in again, or contact the community team; nothing was changed."
    )


class UsernameNotTrusted(SSOError):
    """An upgrade by Username was refused: the system does not vouch for usernames."""

    code = "username_not_trusted"
    page_status = 403
    title = "Username not trusted"
    default_user_message = (
        "Your identity provider's username cannot be used to connect to an existing account "
        "on this site, because this site has not been told that the provider vouches for "
        "usernames. Please contact the community team; nothing was changed."
    )


class LinkNotAllowed(SSOError):
    """The matched account may only be linked by its owner's password, and it has none."""

    code = "link_not_allowed"
    page_status = 403
    title = "Account cannot be connected"
    default_user_message = (
        "Your sign-in matches an existing account on this site that can only be connected by "
        "signing in to it once with its password, and it has none. Please contact the "
        "community team; nothing was changed."
    )


class PendingLinkExpired(SSOError):
    """The link waiting for confirmation is missing, expired or no longer possible."""

    code = "link_expired"
    page_status = 400
    title = "Connection request expired"
    default_user_message = (
        "This request to connect your account has expired. Please sign in again; nothing "
        "was connected."
    )


class MembershipDenied(SSOError):
    """The system's sign-in restriction refuses this membership status.

    The member-facing message is the restriction's own words, passed as ``user_message``.
    """

    code = "membership_denied"
    page_status = 403
    title = "Sign-in not allowed"


# -- linking another sign-in method from the account page (portal/services/account_linking.py) --


class LinkRequestInvalid(SSOError):
    """A callback in a link flow whose link request is missing, expired or for another sign-in."""

    code = "link_request_invalid"
    page_status = 400
    title = "Link request expired"
    default_user_message = (
        "This request to link a sign-in method has expired or was already used. Nothing was "
        "linked; start again from your account page."
    )


class IdentityLinkedElsewhere(SSOError):
    """The provider's identity is already bound to a different account: no takeover, no move."""

    code = "identity_linked_elsewhere"
    page_status = 409
    title = "Linked to another account"
    default_user_message = (
        "This identity provider account is already linked to a different account on this "
        "site. Nothing was changed. If both accounts are yours, ask the community team to "
        "merge them."
    )


class SystemLinkedOtherwise(SSOError):
    """The account is already bound to the system under another User ID (one per system)."""

    code = "system_linked_otherwise"
    page_status = 409
    title = "Already linked"
    default_user_message = (
        "Your account is already linked to a different account at this identity provider. "
        "Unlink it first; nothing was changed."
    )


# -- Personify SSO: the vendor token / customer token protocol (portal/sso/personify.py) -------


class PersonifyKeyInvalid(TemplateError):
    """The saved Vendor Password or Vendor Block is not the hexadecimal key or block AES needs."""

    code = "personify_key_invalid"


class CustomerTokenUnreadable(SSOError):
    """The ``ct`` that came back from Personify does not decrypt to a customer token."""

    code = "customer_token_unreadable"
    page_status = 400
    default_user_message = (
        "The sign-in response from the identity provider could not be read. Please start the "
        "sign-in again."
    )
    retryable = True


class CustomerTokenInvalid(SSOError):
    """Personify says the customer token is not (or no longer) valid."""

    code = "customer_token_invalid"
    page_status = 400
    title = "Sign-in link expired"
    default_user_message = (
        "Your sign-in at the identity provider has expired or was already used. Please sign "
        "in again."
    )
    retryable = True


class PersonifyServiceError(SSOError):
    """A Personify web service answered with errors (a SOAP fault or its ``Errors`` list)."""

    code = "personify_service_error"
    default_user_message = "The identity provider refused the sign-in request."
