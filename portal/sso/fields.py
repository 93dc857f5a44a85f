"""The authentication-system schema: one table of the settings a community manager fills in.

Every list of these settings (the model's column lengths, the form's labels, validation,
placeholders, presets, audit, export and discovery) derives from ``FIELDS``, so a new setting
is one ``Field`` here plus its migration (and, when the form shows it, its form field).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Kinds of field: how a value is typed, checked and stored.
TEXT = "text"
#: An absolute http(s) address, usually a template.
URL = "url"
#: ``Name: value`` lines, a template.
HEADERS = "headers"
#: A request body, a template.
BODY = "body"
CHOICE = "choice"
#: Write-only; stored encrypted, never shown or exported.
SECRET = "secret"
#: A team, by id (by name in an export).
TEAM = "team"
FLAG = "flag"
#: A whole number of minutes (0 = off), at most ``Field.maximum``.
NUMBER = "number"
#: Kinds held as plain text in a column of their own length.
TEXT_KINDS: frozenset[str] = frozenset({TEXT, URL, HEADERS, BODY})

TYPE_OAUTH2 = "oauth2"
TYPE_PERSONIFY = "personify"
TYPES: dict[str, str] = {TYPE_OAUTH2: "OAuth 2.0", TYPE_PERSONIFY: "Personify SSO"}
#: A field every connector type uses.
ALL_TYPES: frozenset[str] = frozenset(TYPES)
_OAUTH2 = frozenset({TYPE_OAUTH2})
_PERSONIFY = frozenset({TYPE_PERSONIFY})

TOKEN_METHODS: tuple[str, ...] = ("POST", "GET")
#: Methods of the Logoff API call (RFC 7009 revocation is a POST; some end-session APIs GET).
LOGOFF_METHODS: tuple[str, ...] = ("POST", "GET", "DELETE")
#: Methods of a profile request (GET first: a profile is usually read).
PROFILE_METHODS: tuple[str, ...] = ("GET", "POST")
#: The most profile requests a system chains after the token request.
MAX_PROFILE_REQUESTS = 4
#: The four parts of a profile request, each a field of this table for every position.
PROFILE_REQUEST_PARTS: tuple[str, ...] = ("method", "url", "headers", "body")

# Alternate Login: who sees a system's sign-in link, and whether passwords still work.
#: Only community managers may try the system's flow; members use their passwords.
LOGIN_LOCAL_ONLY = "local_only"
#: The login page offers the system beside the password form.
LOGIN_LOCAL_AND_REMOTE = "local_and_remote"
#: No password form: members sign in through the provider only.
LOGIN_REMOTE_ONLY = "remote_only"
LOGIN_MODES: dict[str, str] = {
    LOGIN_LOCAL_ONLY: "Local Login Only",
    LOGIN_LOCAL_AND_REMOTE: "Local and Remote Logins",
    LOGIN_REMOTE_ONLY: "Remote Login Only",
}
#: Modes whose sign-in link members see on the login page, once the system is Enabled.
PUBLIC_LOGIN_MODES: frozenset[str] = frozenset({LOGIN_LOCAL_AND_REMOTE, LOGIN_REMOTE_ONLY})

DEFAULT_LOGIN_URL = (
    "https://idp.example.com/oauth2/authorize?response_type=code&client_id=%ClientID%"
    "&redirect_uri=%RedirectURL%&scope=%Scope%&state=%State%&nonce=%Nonce%"
    "&code_challenge=%CodeChallenge%&code_challenge_method=S256"
)
DEFAULT_REFRESH_TOKEN_BODY = (
    "grant_type=refresh_token&refresh_token=%RefreshToken%&client_id=%ClientID%"
    "&client_secret=%ClientSecret%"
)
DEFAULT_TOKEN_BODY = (
    "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
    "&client_id=%ClientID%&client_secret=%ClientSecret%&code_verifier=%CodeVerifier%"
)

# Placeholders each request offers (the names are ``portal.sso.placeholders.PLACEHOLDERS``).
_LOGIN_REQUEST = frozenset(
    {"ClientID", "RedirectURL", "State", "Nonce", "Scope", "CodeChallenge", "LoginHint"}
)
_TOKEN_REQUEST = frozenset(
    {
        "ClientID",
        "ClientSecret",
        "BasicAuth",
        "RedirectURL",
        "Code",
        "CodeVerifier",
        "Nonce",
        "State",
    }
)
_PROFILE_REQUEST = frozenset({"ClientID", "Token", "IDToken", "RefreshToken"})
#: The token request that redeems a refresh token the platform POSTed (a sign-in it started).
_REFRESH_REQUEST = frozenset({"RefreshToken", "ClientID", "ClientSecret", "BasicAuth"})
#: The Logoff API call made at sign-out, server to server, with the session's tokens.
_LOGOFF_REQUEST = frozenset(
    {"Token", "RefreshToken", "IDToken", "ClientID", "ClientSecret", "BasicAuth"}
)
#: Documents a template may read values from with ``%Source:<JMESPath>%``.
TOKEN_RESPONSE_SOURCE = "TokenResponse"


def response_source(position: int) -> str:
    """Return the placeholder source naming the answer of profile request ``position``."""
    return f"Response{position}"


def profile_request_key(position: int, part: str) -> str:
    """Return the field name of one part of profile request ``position`` (1 to 4).

    Request 1 keeps the names the single Profile API had (``profile_url``,
    ``profile_headers``), so presets, discovery and exports written before chaining still
    fill it.
    """
    return f"profile_{part}" if position == 1 else f"profile{position}_{part}"


def profile_request_label(position: int, part: str) -> str:
    """Return the visible label of one part of profile request ``position``."""
    words = {"method": "Method", "url": "URL", "headers": "Headers", "body": "Post Body"}[part]
    return f"Profile API {words}" if position == 1 else f"Profile API {position} {words}"


@dataclass(frozen=True)
class Field:
    """One setting of an authentication system, and what every part of Portal needs of it."""

    name: str
    #: Visible label, verbatim as the admin form shows it.
    label: str
    kind: str
    #: Column length (``String(length)``); None for Text and non-string columns.
    #: For the secret, the longest value accepted (it is stored encrypted, as Text).
    length: int | None = None
    #: The shortest value accepted when one is typed (a key Portal verifies signatures with).
    min_length: int = 0
    #: Value a new system starts from.
    default: Any = ""
    #: Empty is refused (a write-only secret: unless one is stored, which a blank keeps).
    required: bool = False
    #: Placeholders it may use; None when it is not a template.
    placeholders: frozenset[str] | None = None
    #: Values and labels of a CHOICE field, and the message for any other value.
    choices: Mapping[str, str] | None = None
    invalid_choice: str = ""
    #: An address Portal calls (or, for the login URL, the provider Portal then calls):
    #: held to the outbound address policy at save time.
    policy_checked: bool = False
    #: A provider preset may fill it.
    preset: bool = False
    #: A change must come with the Client Secret typed again (the secret is bound to it).
    binds_secret: bool = False
    #: Written to an export.
    exported: bool = True
    #: The sign-in engine reads it: ``SSOConfig`` has an attribute of the same name.
    engine: bool = False
    #: The position (1 to 4) of the profile request this field is a part of; 0 for none.
    #: The engine reads these as ``SSOConfig.profile_requests``.
    profile_request: int = 0
    #: Documents its template may read with ``%Source:<JMESPath>%`` (``TokenResponse``,
    #: ``Response1``...): only the token response and the answers of earlier requests.
    data_sources: frozenset[str] = frozenset()
    #: The connector types (``TYPES``) whose systems use it; the others ignore it (it is
    #: neither required nor checked beyond its length, and their engine never reads it).
    types: frozenset[str] = ALL_TYPES
    #: Only required when this other field is filled in.
    required_with: str = ""
    #: A change must come with this secret typed again: the secret is sent to this address
    #: (its origin is compared) or with this value. The Client Secret's own rules are
    #: ``binds_secret`` and ``secret_binding_changes``.
    bound_to: str = ""
    #: The largest value of a NUMBER field.
    maximum: int | None = None


def _profile_request_fields(position: int) -> tuple[Field, ...]:
    """Return the four fields of profile request ``position``."""
    sources = frozenset({TOKEN_RESPONSE_SOURCE, *(response_source(n) for n in range(1, position))})
    common = {"preset": True, "profile_request": position, "types": _OAUTH2}
    template = {"placeholders": _PROFILE_REQUEST, "data_sources": sources, **common}
    return (
        Field(
            profile_request_key(position, "method"),
            profile_request_label(position, "method"),
            CHOICE,
            length=10,
            default="GET",
            choices={method: method for method in PROFILE_METHODS},
            invalid_choice=f"{profile_request_label(position, 'method')} must be GET or POST.",
            **common,
        ),
        Field(
            profile_request_key(position, "url"),
            profile_request_label(position, "url"),
            URL,
            policy_checked=True,
            **template,
        ),
        Field(
            profile_request_key(position, "headers"),
            profile_request_label(position, "headers"),
            HEADERS,
            **template,
        ),
        Field(
            profile_request_key(position, "body"),
            profile_request_label(position, "body"),
            BODY,
            **template,
        ),
    )


#: Every setting, in the admin form's order.
FIELDS: dict[str, Field] = {
    field.name: field
    for field in (
        Field(
            "type",
            "Type",
            CHOICE,
            length=20,
            default=TYPE_OAUTH2,
            choices=TYPES,
            invalid_choice="Choose a supported Type.",
        ),
        Field("name", "Name", TEXT, length=120, required=True),
        Field(
            "client_id",
            "Client ID",
            TEXT,
            length=255,
            required=True,
            binds_secret=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "client_secret",
            "Client Secret",
            SECRET,
            length=4096,
            required=True,
            exported=False,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "login_url",
            "Identity Provider Login URL",
            URL,
            default=DEFAULT_LOGIN_URL,
            required=True,
            placeholders=_LOGIN_REQUEST,
            policy_checked=True,
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "token_url",
            "Token API URL",
            URL,
            required=True,
            placeholders=_TOKEN_REQUEST,
            policy_checked=True,
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "token_method",
            "Token API Method",
            CHOICE,
            length=10,
            default="POST",
            choices={method: method for method in TOKEN_METHODS},
            invalid_choice="Token API Method must be POST or GET.",
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "token_headers",
            "Token API Headers",
            HEADERS,
            placeholders=_TOKEN_REQUEST,
            preset=True,
            binds_secret=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "token_body",
            "Token API Post Body",
            BODY,
            default=DEFAULT_TOKEN_BODY,
            placeholders=_TOKEN_REQUEST,
            preset=True,
            binds_secret=True,
            engine=True,
            types=_OAUTH2,
        ),
        # A sign-in the platform starts by POSTing a refresh token carries no state, so a
        # system accepts one only when the manager opts in (login CSRF: docs/security.md).
        Field(
            "platform_start",
            "Accept sign-ins started by the platform",
            FLAG,
            default=False,
            preset=True,
            types=_OAUTH2,
        ),
        Field(
            "refresh_token_body",
            "Refresh Token Post Body",
            BODY,
            default=DEFAULT_REFRESH_TOKEN_BODY,
            placeholders=_REFRESH_REQUEST,
            preset=True,
            binds_secret=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "access_token_path",
            "Access Token Path",
            TEXT,
            length=255,
            default="access_token",
            required=True,
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        *(f for n in range(1, MAX_PROFILE_REQUESTS + 1) for f in _profile_request_fields(n)),
        Field(
            "issuer", "Issuer", URL, policy_checked=True, preset=True, engine=True, types=_OAUTH2
        ),
        Field(
            "jwks_url",
            "JWKS URL",
            URL,
            policy_checked=True,
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "scope",
            "Scope",
            TEXT,
            length=255,
            default="openid email profile",
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        # Personify SSO (``portal/sso/personify.py``): ``PersonifyConfig`` has an attribute
        # of each name. The Vendor Password goes in every SOAP call, so the addresses and the
        # username it is sent with are bound to it, as the token request is to the Client Secret.
        Field(
            "sso_login_url",
            "SSO Login URL",
            URL,
            required=True,
            policy_checked=True,
            preset=True,
            types=_PERSONIFY,
        ),
        Field("vendor_id", "Vendor ID", TEXT, length=50, required=True, types=_PERSONIFY),
        Field(
            "vendor_username",
            "Vendor Username",
            TEXT,
            length=255,
            required=True,
            bound_to="vendor_password",
            types=_PERSONIFY,
        ),
        Field(
            "vendor_password",
            "Vendor Password",
            SECRET,
            length=64,
            required=True,
            exported=False,
            types=_PERSONIFY,
        ),
        Field(
            "vendor_block",
            "Vendor Block",
            SECRET,
            length=32,
            required=True,
            exported=False,
            types=_PERSONIFY,
        ),
        Field(
            "sso_web_service_url",
            "SSO Web Service URL",
            URL,
            required=True,
            policy_checked=True,
            preset=True,
            bound_to="vendor_password",
            types=_PERSONIFY,
        ),
        Field(
            "ims_web_service_url",
            "IMS Web Service URL",
            URL,
            required=True,
            policy_checked=True,
            preset=True,
            bound_to="vendor_password",
            types=_PERSONIFY,
        ),
        Field(
            "data_services_url",
            "Data Services URL",
            URL,
            policy_checked=True,
            preset=True,
            bound_to="data_services_password",
            types=_PERSONIFY,
        ),
        Field(
            "data_services_username",
            "Data Services Username",
            TEXT,
            length=255,
            required_with="data_services_url",
            bound_to="data_services_password",
            types=_PERSONIFY,
        ),
        Field(
            "data_services_password",
            "Data Services Password",
            SECRET,
            length=1024,
            required_with="data_services_url",
            exported=False,
            types=_PERSONIFY,
        ),
        # The Alternate Logout and Profile Edit URLs are only links a member's browser
        # follows: Portal never fetches them, so they may name an intranet page.
        Field(
            "logout_url",
            "Alternate Logout URL",
            URL,
            placeholders=frozenset({"ClientID", "ReturnToURL", "IDToken"}),
            preset=True,
        ),
        Field(
            "profile_edit_url",
            "Alternate Profile Edit URL",
            URL,
            placeholders=frozenset({"ClientID", "ReturnToURL"}),
            preset=True,
        ),
        # Issue 9: the provider's session ends with the member's (server to server), and the
        # membership is re-checked during a session (portal/services/membership_recheck.py).
        Field(
            "logoff_url",
            "Logoff API URL",
            URL,
            placeholders=_LOGOFF_REQUEST,
            policy_checked=True,
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "logoff_method",
            "Logoff API Method",
            CHOICE,
            length=10,
            default="POST",
            choices={method: method for method in LOGOFF_METHODS},
            invalid_choice="Logoff API Method must be POST, GET or DELETE.",
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "logoff_headers",
            "Logoff API Headers",
            HEADERS,
            placeholders=_LOGOFF_REQUEST,
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "logoff_body",
            "Logoff API Post Body",
            BODY,
            placeholders=_LOGOFF_REQUEST,
            preset=True,
            engine=True,
            types=_OAUTH2,
        ),
        Field(
            "recheck_minutes",
            "Re-check Membership Every (minutes)",
            NUMBER,
            default=0,
            maximum=7 * 24 * 60,
            types=_OAUTH2,
        ),
        Field(
            "grace_minutes",
            "Grace Period (minutes)",
            NUMBER,
            default=60,
            maximum=7 * 24 * 60,
            types=_OAUTH2,
        ),
        Field("login_label", "Alternate Login Label", TEXT, length=120),
        Field(
            "login_mode",
            "Alternate Login",
            CHOICE,
            length=20,
            default=LOGIN_LOCAL_ONLY,
            choices=LOGIN_MODES,
            invalid_choice="Choose one of the Alternate Login modes.",
        ),
        # Issue 9 item 4: the association signs its deprovisioning webhook with this
        # (HMAC-SHA256, docs/membership-lifecycle.md); it is never sent anywhere.
        Field(
            "webhook_secret",
            "Webhook Signing Secret",
            SECRET,
            length=256,
            min_length=32,
            exported=False,
        ),
        Field("onboarding_team_id", "Onboarding Team", TEAM, default=None),
        Field("enabled", "Enabled", FLAG, default=False),
        Field("trusts_email", "This provider verifies email addresses", FLAG, default=False),
        Field("trusts_username", "This provider verifies usernames", FLAG, default=False),
    )
}

#: Visible label of every field, as the admin form shows it.
LABELS: dict[str, str] = {name: field.label for name, field in FIELDS.items()}
#: Text fields with their column lengths (None: unbounded text).
TEXT_FIELDS: dict[str, int | None] = {
    name: field.length for name, field in FIELDS.items() if field.kind in TEXT_KINDS
}
FLAG_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.kind == FLAG)
CHOICE_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.kind == CHOICE)
NUMBER_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.kind == NUMBER)
REQUIRED_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.required)
#: Write-only settings, stored encrypted (column ``<name>_encrypted``), never shown or exported.
SECRET_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.kind == SECRET)
#: Fields holding an address (templates or plain), checked as absolute http(s) URLs.
URL_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.kind == URL)
POLICY_URL_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.policy_checked)
HEADER_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.kind == HEADERS)
#: Template fields and the placeholders each one offers.
TEMPLATE_FIELDS: dict[str, frozenset[str]] = {
    name: f.placeholders for name, f in FIELDS.items() if f.placeholders is not None
}
#: Fields a provider preset may fill, in the form's order.
PRESET_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.preset)
#: Fields whose change needs the Client Secret typed again (besides where the secret goes).
SECRET_BOUND_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.binds_secret)
#: Fields the sign-in engine reads (``SSOConfig`` attributes), in the form's order.
ENGINE_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.engine)
#: Template fields and the documents each one may read with ``%Source:<JMESPath>%``.
DATA_SOURCE_FIELDS: dict[str, frozenset[str]] = {
    name: f.data_sources for name, f in FIELDS.items() if f.data_sources
}
#: The field names of each profile request, by position: ``{1: {"url": "profile_url", ...}}``.
PROFILE_REQUEST_FIELDS: dict[int, dict[str, str]] = {
    n: {part: profile_request_key(n, part) for part in PROFILE_REQUEST_PARTS}
    for n in range(1, MAX_PROFILE_REQUESTS + 1)
}
#: Fields an export writes, in the form's order.
EXPORTED_FIELDS: tuple[str, ...] = tuple(name for name, f in FIELDS.items() if f.exported)

#: Fields a Personify SSO system's engine reads (``PersonifyConfig`` attributes).
PERSONIFY_FIELDS: tuple[str, ...] = tuple(
    name for name, f in FIELDS.items() if f.types == _PERSONIFY
)


def encrypted_column(name: str) -> str:
    """Return the model column that holds a secret field encrypted."""
    return f"{name}_encrypted"


def fields_of_type(type_: str) -> tuple[str, ...]:
    """Return the fields a system of connector type ``type_`` uses, in the form's order."""
    return tuple(name for name, f in FIELDS.items() if type_ in f.types)
