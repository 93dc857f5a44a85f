"""Authentication systems: read at runtime by the sign-in flow, written by the admin."""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import AuthSystem, Identity, LoginAttempt, ProfileParamRow, Team, User
from portal.models.auth_system import LOGIN_LOCAL_ONLY, LOGIN_MODES, TYPE_OAUTH2, TYPES
from portal.presets import FORM_FIELDS as PRESET_FIELDS
from portal.presets import marker_messages
from portal.services import audit
from portal.services.audit_changes import diff_auth_system_data
from portal.services.outbound import address_policy
from portal.services.secrets import (
    SecretUnreadable,
    decrypt_secret,
    encrypt_secret,
    rotate_secret,
)
from portal.sso.engine import OPTION_FIELDS, PROFILE_FIELDS
from portal.sso.paths import path_limit_problem, validate_path
from portal.sso.placeholders import (
    PLACEHOLDERS,
    TEMPLATE_FIELDS,
    Context,
    find_placeholders,
    render,
    validate_header_lines,
    validate_template,
)

#: Visible label of every field of an authentication system, as the admin form shows it.
LABELS: dict[str, str] = {
    "type": "Type",
    "name": "Name",
    "client_id": "Client ID",
    "client_secret": "Client Secret",
    "login_url": "Identity Provider Login URL",
    "token_url": "Token API URL",
    "token_method": "Token API Method",
    "token_headers": "Token API Headers",
    "token_body": "Token API Post Body",
    "access_token_path": "Access Token Path",
    "profile_url": "Profile API URL",
    "profile_headers": "Profile API Headers",
    "issuer": "Issuer",
    "jwks_url": "JWKS URL",
    "scope": "Scope",
    "logout_url": "Alternate Logout URL",
    "profile_edit_url": "Alternate Profile Edit URL",
    "login_label": "Alternate Login Label",
    "login_mode": "Alternate Login",
    "onboarding_team_id": "Onboarding Team",
    "enabled": "Enabled",
    "trusts_email": "This provider verifies email addresses",
    "trusts_username": "This provider verifies usernames",
}

#: On/off settings of a system (everything else is text or a choice).
FLAG_FIELDS: tuple[str, ...] = ("enabled", "trusts_email", "trusts_username")

#: Text fields, in form order, with their column lengths (None: unbounded text).
TEXT_FIELDS: dict[str, int | None] = {
    "name": 120,
    "client_id": 255,
    "login_url": None,
    "token_url": None,
    "token_headers": None,
    "token_body": None,
    "access_token_path": 255,
    "profile_url": None,
    "profile_headers": None,
    "issuer": None,
    "jwks_url": None,
    "scope": 255,
    "logout_url": None,
    "profile_edit_url": None,
    "login_label": 120,
}
#: Fields holding an address (templates or plain), checked as absolute http(s) URLs.
URL_FIELDS: tuple[str, ...] = (
    "login_url",
    "token_url",
    "profile_url",
    "issuer",
    "jwks_url",
    "logout_url",
    "profile_edit_url",
)
#: Addresses Portal itself calls (or, for the login URL, the provider Portal then calls), held
#: to the outbound address policy at save time. The Alternate Logout and Profile Edit URLs
#: are only links a member's browser follows: Portal never fetches them, so they may name an
#: intranet page.
POLICY_URL_FIELDS: tuple[str, ...] = ("login_url", "token_url", "profile_url", "issuer", "jwks_url")
HEADER_FIELDS: tuple[str, ...] = ("token_headers", "profile_headers")
#: Placeholders that carry the client secret.
SECRET_PLACEHOLDERS: frozenset[str] = frozenset({"ClientSecret", "BasicAuth"})
#: Fields of the token request whose change needs the Client Secret typed again.
TOKEN_REQUEST_FIELDS: tuple[str, ...] = ("token_headers", "token_body")
TOKEN_METHODS: tuple[str, ...] = ("POST", "GET")
LOCAL_HOSTS: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1"})

DEFAULT_LOGIN_URL = (
    "https://idp.example.com/oauth2/authorize?response_type=code&client_id=%ClientID%"
    "&redirect_uri=%RedirectURL%&scope=%Scope%&state=%State%&nonce=%Nonce%"
    "&code_challenge=%CodeChallenge%&code_challenge_method=S256"
)
DEFAULT_TOKEN_BODY = (
    "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
    "&client_id=%ClientID%&client_secret=%ClientSecret%&code_verifier=%CodeVerifier%"
)
DEFAULT_PARAM_PATHS: dict[str, str] = {
    "user_id": "sub",
    "email": "email",
    "first_name": "given_name",
    "last_name": "family_name",
}


class AuthSystemInvalid(ValueError):
    """The data of an authentication system breaks a rule; ``errors`` says which, per field."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("The authentication system is not valid.")
        self.errors = errors


def slugify(name: str) -> str:
    """Return the URL identifier for a system's name (ASCII, lower case, dashes)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def list_auth_systems() -> list[AuthSystem]:
    """Return every authentication system, by name."""
    return list(db.session.scalars(sa.select(AuthSystem).order_by(AuthSystem.name_key)))


def list_enabled_systems() -> list[AuthSystem]:
    """Return the enabled systems with their profile parameters, by name."""
    query = (
        sa.select(AuthSystem)
        .where(AuthSystem.enabled.is_(True))
        .options(selectinload(AuthSystem.params))
        .order_by(AuthSystem.name_key)
    )
    return list(db.session.scalars(query))


def get_auth_system(system_id: int) -> AuthSystem | None:
    """Return the system with this id."""
    return db.session.get(AuthSystem, system_id)


def get_system_by_slug(slug: str) -> AuthSystem | None:
    """Return the system whose Redirect URL uses ``slug``."""
    query = (
        sa.select(AuthSystem)
        .where(AuthSystem.slug == slug)
        .options(selectinload(AuthSystem.params))
    )
    return db.session.scalar(query)


def read_client_secret(system: AuthSystem) -> str:
    """Return the decrypted client secret of ``system``."""
    return decrypt_secret(system.client_secret_encrypted)


def store_client_secret(system: AuthSystem, secret: str) -> None:
    """Encrypt and set the client secret of ``system`` (not committed)."""
    system.client_secret_encrypted = encrypt_secret(secret)


def rotate_all_secrets() -> int:
    """Re-encrypt every stored client secret under the newest key; return how many."""
    count = 0
    for system in db.session.scalars(sa.select(AuthSystem)):
        if system.client_secret_encrypted:
            system.client_secret_encrypted = rotate_secret(system.client_secret_encrypted)
            count += 1
    db.session.commit()
    return count


def param_error_key(field: str) -> str:
    """Return the key under which errors about a profile parameter's path are reported."""
    return f"params.{field}"


def default_auth_system_data() -> dict[str, Any]:
    """Return the values a new authentication system starts from."""
    return {
        "type": TYPE_OAUTH2,
        "name": "",
        "client_id": "",
        "client_secret": "",
        "login_url": DEFAULT_LOGIN_URL,
        "token_url": "",
        "token_method": "POST",
        "token_headers": "",
        "token_body": DEFAULT_TOKEN_BODY,
        "access_token_path": "access_token",
        "profile_url": "",
        "profile_headers": "",
        "issuer": "",
        "jwks_url": "",
        "scope": "openid email profile",
        "logout_url": "",
        "profile_edit_url": "",
        "login_label": "",
        "login_mode": LOGIN_LOCAL_ONLY,
        "onboarding_team_id": None,
        "enabled": False,
        "trusts_email": False,
        "trusts_username": False,
        "params": {
            key: {
                "path": DEFAULT_PARAM_PATHS.get(key, ""),
                "can_upgrade": False,
                "must_supply": False,
            }
            for key, _label in PROFILE_FIELDS
        },
    }


def auth_system_data(system: AuthSystem) -> dict[str, Any]:
    """Return the editable values of a saved system; the client secret is left out (blank)."""
    data = default_auth_system_data()
    for key in TEXT_FIELDS:
        data[key] = getattr(system, key) or ""
    data.update(
        type=system.type,
        token_method=system.token_method,
        login_mode=system.login_mode,
        onboarding_team_id=system.onboarding_team_id,
        client_secret="",
    )
    for key in FLAG_FIELDS:
        data[key] = bool(getattr(system, key))
    for key, _label in PROFILE_FIELDS:
        row = system.param(key)
        data["params"][key] = {
            "path": row.path if row else "",
            "can_upgrade": bool(row and row.can_upgrade),
            "must_supply": bool(row and row.must_supply),
        }
    return data


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``data`` over the defaults, with text stripped and types made plain."""
    clean = default_auth_system_data()
    for key, value in data.items():
        if key == "params" or key not in clean:
            continue
        clean[key] = value
    for key in (*TEXT_FIELDS, "type", "token_method", "login_mode"):
        clean[key] = str(clean[key] or "").strip()
    # Pasted secrets often bring a stray space or newline; providers never issue those.
    clean["client_secret"] = str(clean["client_secret"] or "").strip()
    clean["token_method"] = clean["token_method"].upper()
    for key in FLAG_FIELDS:
        clean[key] = bool(clean[key])
    team = clean["onboarding_team_id"]
    if team in (None, ""):
        clean["onboarding_team_id"] = None
    elif str(team).isdigit():
        clean["onboarding_team_id"] = int(team)
    # Without "params" at all the default paths stand; a given mapping is taken as complete.
    if "params" not in data:
        return clean
    params = data.get("params") or {}
    for key, _label in PROFILE_FIELDS:
        given = params.get(key) or {}
        row = clean["params"][key]
        row["path"] = str(given.get("path") or "").strip()
        row["can_upgrade"] = bool(given.get("can_upgrade")) and key in OPTION_FIELDS
        row["must_supply"] = bool(given.get("must_supply")) and key in OPTION_FIELDS
    return clean


def _url_problem(value: str, label: str) -> str | None:
    """Return why ``value`` is not an acceptable absolute http(s) address, or None."""
    if any(ch.isspace() for ch in value):
        return f"The {label} must not contain spaces or line breaks."
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return f"The {label} must be an absolute http:// or https:// address."
    if parts.scheme not in ("http", "https") or not parts.netloc or not host:
        return f"The {label} must be an absolute http:// or https:// address."
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        if not current_app.config.get("PORTAL_ALLOW_INSECURE_HTTP"):
            return (
                f"The {label} must use https:// (plain http:// is only allowed for "
                "localhost and 127.0.0.1)."
            )
    return None


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Return the address of a shorthand IPv4 host (``127.1``, ``0x7f.0.0.1``, ``2130706433``).

    Resolvers accept these forms; the policy's parser does not, so they are read here first.
    """
    if not re.fullmatch(r"[0-9a-fA-FxX.]+", host) or not any(c.isdigit() for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def address_policy_problem(url: str, label: str) -> str | None:
    """Return why the outbound address policy refuses the host of ``url``, or None.

    Loopback passes outside production; ``PORTAL_ALLOWED_PRIVATE_NETWORKS`` lets an operator
    allow an on-premises provider. Names are judged again, on what they resolve to, when
    Portal connects.
    """
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None
    if not host:
        return None
    policy = address_policy()
    shorthand = _numeric_ipv4(host)
    why = policy.address_problem(shorthand) if shorthand else policy.host_problem(host)
    if not why:
        return None
    return (
        f"The {label} points to {why}; Portal only calls identity providers on public "
        "addresses. An operator can allow a private network with "
        "PORTAL_ALLOWED_PRIVATE_NETWORKS."
    )


def pkce_problem(clean: Mapping[str, Any]) -> str | None:
    """Return why the login URL's PKCE challenge would go unanswered, or None.

    A challenge without its verifier in the token request makes every sign-in fail at a
    provider that enforces PKCE, and protects nothing at one that does not.
    """
    if "CodeChallenge" not in find_placeholders(clean["login_url"]):
        return None
    token_request = " ".join(clean[key] for key in ("token_url", *TOKEN_REQUEST_FIELDS))
    if "CodeVerifier" in find_placeholders(token_request):
        return None
    return (
        "The Identity Provider Login URL sends a PKCE challenge (%CodeChallenge%), but the "
        "token request never sends its verifier: add code_verifier=%CodeVerifier% to the "
        "Token API Post Body (or remove the challenge from the login URL)."
    )


def _origin(template: str) -> str:
    """Return ``scheme://host:port`` of a URL template (placeholders made harmless), or ""."""
    if not template:
        return ""
    try:
        parts = urlsplit(_substituted(template))
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
        host = parts.hostname or ""
    except ValueError:
        return template
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


def _sends_secret(data: Mapping[str, Any], *keys: str) -> bool:
    return any(SECRET_PLACEHOLDERS & set(find_placeholders(data.get(k) or "")) for k in keys)


def secret_binding_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Return what changed between two configurations that the stored secret is bound to.

    The secret was saved for one token endpoint (its origin), one Client ID and one way of
    sending it (the token request's headers and body), and for the profile endpoint when the
    profile request carries it. A change to any of these must come with the secret typed
    again, or a stored secret could be sent to a host its owner never chose.
    """
    changes: list[str] = []
    old, new = _origin(before.get("token_url") or ""), _origin(after.get("token_url") or "")
    if old != new:
        changes.append(f"the {LABELS['token_url']} now goes to {new or 'nowhere'} instead of {old}")
    profile_keys = ("profile_url", "profile_headers")
    if _sends_secret(after, *profile_keys):
        if not _sends_secret(before, *profile_keys):
            changes.append(f"the {LABELS['profile_url']} or Headers now send the secret")
        else:
            old = _origin(before.get("profile_url") or "")
            new = _origin(after.get("profile_url") or "")
            if old != new:
                changes.append(
                    f"the {LABELS['profile_url']}, which sends the secret, now goes to {new} "
                    f"instead of {old}"
                )
    if (before.get("client_id") or "").strip() != (after.get("client_id") or "").strip():
        changes.append(f"the {LABELS['client_id']} changed")
    for key in TOKEN_REQUEST_FIELDS:
        if (before.get(key) or "").strip() != (after.get(key) or "").strip():
            changes.append(f"the {LABELS[key]} changed")
    return changes


def secret_binding_message(changes: list[str]) -> str:
    """Return the Client Secret's error for ``changes`` (from ``secret_binding_changes``)."""
    return (
        f"Type the Client Secret again: {'; '.join(changes)}. The stored secret is only sent "
        "to the host, Client ID and token request it was saved for."
    )


def _substituted(template: str) -> str:
    """Return ``template`` with every placeholder replaced by a harmless dummy value."""
    return render(template, Context.URL, {name: "x" for name in PLACEHOLDERS})


def _find_by_name_key(name_key: str) -> AuthSystem | None:
    return db.session.scalar(sa.select(AuthSystem).where(AuthSystem.name_key == name_key))


def validate_auth_system_data(
    data: Mapping[str, Any], system: AuthSystem | None = None
) -> dict[str, list[str]]:
    """Return the problems of ``data`` per field (``params.<key>`` for paths); empty when valid.

    ``system`` is the saved system being edited (None when creating): it is left out of the
    uniqueness checks, and with it a blank Client Secret keeps the stored one.
    """
    clean = _clean(data)
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    required = ["name", "client_id", "login_url", "token_url", "access_token_path"]
    if clean["login_mode"] != LOGIN_LOCAL_ONLY:
        required.append("login_label")
    for key in required:
        if not clean[key]:
            add(key, f"{LABELS[key]} is required.")
    if system is None and not clean["client_secret"]:
        add("client_secret", "Client Secret is required.")
    if not clean["params"]["user_id"]["path"]:
        add(param_error_key("user_id"), "User ID path is required.")

    for key, limit in TEXT_FIELDS.items():
        if limit is not None and len(clean[key]) > limit:
            add(key, f"{LABELS[key]} must be at most {limit} characters.")
    if len(clean["client_secret"]) > 4096:
        add("client_secret", "Client Secret must be at most 4096 characters.")

    if clean["type"] not in TYPES:
        add("type", "Choose a supported Type.")
    if clean["token_method"] not in TOKEN_METHODS:
        add("token_method", "Token API Method must be POST or GET.")
    if clean["login_mode"] not in LOGIN_MODES:
        add("login_mode", "Choose one of the Alternate Login modes.")
    team_id = clean["onboarding_team_id"]
    known_team = isinstance(team_id, int) and db.session.get(Team, team_id) is not None
    if team_id is not None and not known_team:
        add("onboarding_team_id", "Choose an existing team, or None.")

    if clean["name"]:
        slug = slugify(clean["name"])
        other = _find_by_name_key(clean["name"].lower())
        if other is not None and other is not system:
            add("name", f"An authentication system named {other.name} already exists.")
        elif not slug:
            add("name", "Name needs at least one letter or digit (it makes the Redirect URL).")
        else:
            same_slug = get_system_by_slug(slug)
            if same_slug is not None and same_slug is not system:
                add(
                    "name",
                    f'This Name gives the Redirect URL identifier "{slug}", already used by '
                    f"{same_slug.name}; choose a more distinct Name.",
                )

    # A {marker} a preset left (only in the fields presets fill: a Name, label or secret may
    # hold braces) is named; the field's address and path checks wait until it is replaced.
    for key in PRESET_FIELDS:
        for message in marker_messages(clean[key]):
            add(key, message)

    # Placeholders first; a template is then checked as a URL with dummy values substituted.
    for key in TEMPLATE_FIELDS:
        if clean[key]:
            for message in validate_template(clean[key], key):
                add(key, message)
    if clean["login_url"] and "State" not in find_placeholders(clean["login_url"]):
        add("login_url", "The Identity Provider Login URL must contain %State%.")
    for key in HEADER_FIELDS:
        for message in validate_header_lines(clean[key]):
            add(key, message)
    for key in URL_FIELDS:
        if clean[key] and key not in errors:
            url = _substituted(clean[key])
            problem = _url_problem(url, LABELS[key])
            if not problem and key in POLICY_URL_FIELDS:
                problem = address_policy_problem(url, LABELS[key])
            if problem:
                add(key, problem)
    pkce = pkce_problem(clean) if "token_body" not in errors else None
    if pkce:
        add("token_body", pkce)
    # A blank Client Secret keeps the stored one only where the secret was meant to go.
    if system is not None and system.client_secret_encrypted and not clean["client_secret"]:
        changes = secret_binding_changes(auth_system_data(system), clean)
        if changes:
            add("client_secret", secret_binding_message(changes))
    if clean["jwks_url"] and not clean["issuer"]:
        add("issuer", "Issuer is required with a JWKS URL (both turn on ID token validation).")

    if clean["access_token_path"] and "access_token_path" not in errors:
        problem = validate_path(clean["access_token_path"])
        if problem:
            add("access_token_path", f"Not a valid path: {problem}")
        else:
            limit = path_limit_problem(clean["access_token_path"])
            if limit:
                add("access_token_path", f"The {LABELS['access_token_path']} {limit}")
    for key, label in PROFILE_FIELDS:
        path = clean["params"][key]["path"]
        markers = marker_messages(path)
        for message in markers:
            add(param_error_key(key), message)
        if path and not markers:
            problem = validate_path(path)
            if problem:
                add(param_error_key(key), f"{label}: not a valid path: {problem}")
            else:
                limit = path_limit_problem(path)
                if limit:
                    add(param_error_key(key), f"The {label} path {limit}")
    return errors


def _apply(system: AuthSystem, clean: dict[str, Any]) -> None:
    """Copy validated values onto ``system`` (the secret only when one was typed)."""
    for key in TEXT_FIELDS:
        setattr(system, key, clean[key])
    system.name_key = clean["name"].lower()
    system.slug = slugify(clean["name"])
    system.type = clean["type"]
    system.token_method = clean["token_method"]
    system.login_mode = clean["login_mode"]
    system.onboarding_team_id = clean["onboarding_team_id"]
    for key in FLAG_FIELDS:
        setattr(system, key, clean[key])
    if clean["client_secret"]:
        store_client_secret(system, clean["client_secret"])
    for key, _label in PROFILE_FIELDS:
        values = clean["params"][key]
        row = system.param(key)
        if row is None:
            row = ProfileParamRow(field=key)
            system.params.append(row)
        row.path = values["path"]
        row.can_upgrade = values["can_upgrade"]
        row.must_supply = values["must_supply"]


def _commit_or_conflict(flush_only: bool = False) -> None:
    """Commit (or flush); a unique-name race becomes the same error the check gives."""
    try:
        if flush_only:
            db.session.flush()
        else:
            db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise AuthSystemInvalid(
            {"name": ["An authentication system with this Name or Redirect URL already exists."]}
        ) from exc


def _secret_differs(system: AuthSystem, typed: str) -> bool:
    """Tell whether a typed Client Secret replaces the stored one by a different value."""
    if not typed:
        return False
    try:
        return not hmac.compare_digest(read_client_secret(system).encode(), typed.encode())
    except SecretUnreadable:
        return True


def create_auth_system(
    data: Mapping[str, Any],
    *,
    actor: User | None = None,
    audit_details: Mapping[str, Any] | None = None,
    commit: bool = True,
) -> AuthSystem:
    """Validate ``data`` and save a new authentication system; raise AuthSystemInvalid.

    The audit log records the new system's settings (the secret only as "changed"), with
    ``audit_details`` added. With ``commit`` off the caller commits (one transaction with
    its own writes).
    """
    errors = validate_auth_system_data(data)
    if errors:
        raise AuthSystemInvalid(errors)
    clean = _clean(data)
    system = AuthSystem()
    _apply(system, clean)
    db.session.add(system)
    _commit_or_conflict(flush_only=True)
    changes = diff_auth_system_data({}, auth_system_data(system), secret_changed=True)
    audit.record_event(
        audit.SYSTEM_CREATED,
        actor=actor,
        system=system,
        details={"changes": changes, **(audit_details or {})},
    )
    if commit:
        _commit_or_conflict()
    return system


def update_auth_system(
    system: AuthSystem,
    data: Mapping[str, Any],
    *,
    actor: User | None = None,
    audit_details: Mapping[str, Any] | None = None,
    commit: bool = True,
) -> AuthSystem:
    """Validate ``data`` and save it over ``system``; a blank Client Secret keeps the stored one.

    The audit log records exactly the fields that changed (nothing when none did), with
    ``audit_details`` added. With ``commit`` off the caller commits.
    """
    errors = validate_auth_system_data(data, system=system)
    if errors:
        raise AuthSystemInvalid(errors)
    clean = _clean(data)
    before = auth_system_data(system)
    secret_changed = _secret_differs(system, clean["client_secret"])
    _apply(system, clean)
    # Flush first: a unique-name race must surface here, not in the audit purge's statement.
    _commit_or_conflict(flush_only=True)
    changes = diff_auth_system_data(before, auth_system_data(system), secret_changed=secret_changed)
    if changes:
        audit.record_event(
            audit.SYSTEM_UPDATED,
            actor=actor,
            system=system,
            details={"changes": changes, **(audit_details or {})},
        )
    if commit:
        _commit_or_conflict()
    return system


def set_auth_system_enabled(
    system: AuthSystem, enabled: bool, *, actor: User | None = None
) -> None:
    """Turn a system on or off for sign-in (audited when the state changes)."""
    if bool(system.enabled) != enabled:
        kind = audit.SYSTEM_ENABLED if enabled else audit.SYSTEM_DISABLED
        audit.record_event(kind, actor=actor, system=system)
    system.enabled = enabled
    db.session.commit()


def count_auth_system_bindings(system: AuthSystem) -> int:
    """Return how many member accounts are bound to ``system``."""
    query = sa.select(sa.func.count()).where(Identity.auth_system_id == system.id)
    return db.session.scalar(query) or 0


def delete_auth_system(system: AuthSystem, *, actor: User | None = None) -> None:
    """Delete a system with its profile parameters, member bindings and login attempts."""
    audit.record_event(
        audit.SYSTEM_DELETED,
        actor=actor,
        system=system,
        details={"bindings": count_auth_system_bindings(system)},
    )
    # Explicit deletes, so SQLite without enforced foreign keys leaves nothing orphaned.
    db.session.execute(sa.delete(Identity).where(Identity.auth_system_id == system.id))
    db.session.execute(sa.delete(LoginAttempt).where(LoginAttempt.auth_system_id == system.id))
    db.session.delete(system)
    db.session.commit()
