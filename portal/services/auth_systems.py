"""Authentication systems: queries, the form's data, and create, update, enable and delete."""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import AuthSystem, Identity, LoginAttempt, ProfileParamRow, Team, User
from portal.services import audit
from portal.services.audit_changes import diff_auth_system_data
from portal.services.auth_system_validation import (
    bound_secret_changes,
    bound_secret_message,
    secret_binding_changes,
    secret_binding_message,
    settings_problems,
    used_fields,
    whole_number,
)
from portal.services.secrets import (
    SecretUnreadable,
    decrypt_secret,
    encrypt_secret,
    rotate_secret,
)
from portal.sso.fields import (
    CHOICE_FIELDS,
    FIELDS,
    FLAG_FIELDS,
    LABELS,
    NUMBER_FIELDS,
    PROFILE_REQUEST_FIELDS,
    PUBLIC_LOGIN_MODES,
    SECRET_FIELDS,
    TEXT_FIELDS,
    encrypted_column,
)
from portal.sso.profile_fields import PROFILE_FIELDS, default_param_values, param_options


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


def get_system_by_name(name: str) -> AuthSystem | None:
    """Return the system named ``name`` (names differ by more than case)."""
    return db.session.scalar(sa.select(AuthSystem).where(AuthSystem.name_key == name.lower()))


def get_system_by_slug(slug: str) -> AuthSystem | None:
    """Return the system whose Redirect URL uses ``slug``."""
    query = (
        sa.select(AuthSystem)
        .where(AuthSystem.slug == slug)
        .options(selectinload(AuthSystem.params), selectinload(AuthSystem.profile_requests))
    )
    return db.session.scalar(query)


def read_client_secret(system: AuthSystem) -> str:
    """Return the decrypted client secret of ``system``."""
    return decrypt_secret(system.client_secret_encrypted)


def store_client_secret(system: AuthSystem, secret: str) -> None:
    """Encrypt and set the client secret of ``system`` (not committed)."""
    system.client_secret_encrypted = encrypt_secret(secret)


def stored_secrets(system: AuthSystem | None) -> frozenset[str]:
    """Return the secret fields ``system`` holds a value for (none for a new system)."""
    if system is None:
        return frozenset()
    return frozenset(name for name in SECRET_FIELDS if getattr(system, encrypted_column(name)))


def read_secret(system: AuthSystem, name: str) -> str:
    """Return the decrypted value of the secret field ``name`` of ``system``."""
    return decrypt_secret(getattr(system, encrypted_column(name)))


def rotate_all_secrets() -> int:
    """Re-encrypt every stored secret under the newest key; return how many."""
    count = 0
    for system in db.session.scalars(sa.select(AuthSystem)):
        for name in SECRET_FIELDS:
            column = encrypted_column(name)
            if getattr(system, column):
                setattr(system, column, rotate_secret(getattr(system, column)))
                count += 1
    db.session.commit()
    return count


def default_auth_system_data() -> dict[str, Any]:
    """Return the values a new authentication system starts from."""
    data: dict[str, Any] = {name: field.default for name, field in FIELDS.items()}
    data["params"] = default_param_values()
    return data


def auth_system_data(system: AuthSystem) -> dict[str, Any]:
    """Return the editable values of a saved system; the client secret is left out (blank)."""
    data = default_auth_system_data()
    for key in TEXT_FIELDS:
        data[key] = getattr(system, key) or ""
    for key in CHOICE_FIELDS:
        data[key] = getattr(system, key)
    data["onboarding_team_id"] = system.onboarding_team_id
    for key in FLAG_FIELDS:
        data[key] = bool(getattr(system, key))
    for key in NUMBER_FIELDS:
        data[key] = getattr(system, key) or 0
    for key, _label in PROFILE_FIELDS:
        row = system.param(key)
        # A flag saved before its field stopped offering the option reads as off.
        given = {"can_upgrade": row.can_upgrade, "must_supply": row.must_supply} if row else {}
        data["params"][key] = {"path": row.path if row else "", **param_options(key, given)}
    return data


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``data`` over the defaults, with text stripped and types made plain."""
    clean = default_auth_system_data()
    for key, value in data.items():
        if key == "params" or key not in clean:
            continue
        clean[key] = value
    for key in (*TEXT_FIELDS, *CHOICE_FIELDS):
        clean[key] = str(clean[key] or "").strip()
    # Pasted secrets often bring a stray space or newline; providers never issue those.
    for key in SECRET_FIELDS:
        clean[key] = str(clean[key] or "").strip()
    clean["token_method"] = clean["token_method"].upper()
    for parts in PROFILE_REQUEST_FIELDS.values():
        # An unused slot's method may come empty (a preset, an old export): GET.
        clean[parts["method"]] = clean[parts["method"]].upper() or "GET"
    # A choice the Type does not use is ignored: an unknown value falls back to the default.
    for key in CHOICE_FIELDS:
        field = FIELDS[key]
        if key not in used_fields(clean) and clean[key] not in (field.choices or {}):
            clean[key] = field.default
    for key in FLAG_FIELDS:
        clean[key] = bool(clean[key])
    for key in NUMBER_FIELDS:
        clean[key] = whole_number(clean[key])
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
        # An option the field does not offer (a crafted form, an import) is never saved.
        row.update(param_options(key, given))
    return clean


def validate_auth_system_data(
    data: Mapping[str, Any], system: AuthSystem | None = None
) -> dict[str, list[str]]:
    """Return the problems of ``data`` per field (``params.<key>`` for paths); empty when valid.

    ``system`` is the saved system being edited (None when creating): it is left out of the
    uniqueness checks, and with it a blank Client Secret keeps the stored one.
    """
    clean = _clean(data)
    errors = settings_problems(clean, stored_secrets=_kept_secrets(system, clean))

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    team_id = clean["onboarding_team_id"]
    known_team = isinstance(team_id, int) and db.session.get(Team, team_id) is not None
    if team_id is not None and not known_team:
        add("onboarding_team_id", "Choose an existing team, or None.")
    if clean["name"]:
        problem = _name_problem(clean["name"], system)
        if problem:
            add("name", problem)
    # A blank secret keeps the stored one only where the secret was meant to go.
    held = stored_secrets(system) & used_fields(clean)
    if system is not None and held:
        before = auth_system_data(system)
        if "client_secret" in held and not clean["client_secret"]:
            changes = secret_binding_changes(before, clean)
            if changes:
                add("client_secret", secret_binding_message(changes))
        for secret in held - {"client_secret"}:
            if not clean[secret] and (changes := bound_secret_changes(before, clean, secret)):
                add(secret, bound_secret_message(secret, changes))
    return errors


def _kept_secrets(system: AuthSystem | None, clean: Mapping[str, Any]) -> frozenset[str]:
    """Return the secrets a blank field may leave as they are when saving ``clean``.

    The stored ones; and an edit that keeps the Type never asks again for a required secret
    the system was saved without (a change of Type, or a secret required only with another
    setting, asks for it).
    """
    if system is None:
        return frozenset()
    kept = stored_secrets(system)
    if system.type == clean["type"]:
        kept |= {name for name in SECRET_FIELDS if not FIELDS[name].required_with}
    return kept


def _name_problem(name: str, system: AuthSystem | None) -> str | None:
    """Return why ``name`` cannot name ``system`` (taken, or no Redirect URL), or None."""
    slug = slugify(name)
    other = get_system_by_name(name)
    if other is not None and other is not system:
        return f"An authentication system named {other.name} already exists."
    if not slug:
        return "Name needs at least one letter or digit (it makes the Redirect URL)."
    same_slug = get_system_by_slug(slug)
    if same_slug is not None and same_slug is not system:
        return (
            f'This Name gives the Redirect URL identifier "{slug}", already used by '
            f"{same_slug.name}; choose a more distinct Name."
        )
    return None


def _apply(system: AuthSystem, clean: dict[str, Any]) -> None:
    """Copy validated values onto ``system`` (the secret only when one was typed)."""
    for key in TEXT_FIELDS:
        setattr(system, key, clean[key])
    system.name_key = clean["name"].lower()
    system.slug = slugify(clean["name"])
    for key in CHOICE_FIELDS:
        setattr(system, key, clean[key])
    system.onboarding_team_id = clean["onboarding_team_id"]
    for key in FLAG_FIELDS:
        setattr(system, key, clean[key])
    for key in NUMBER_FIELDS:
        setattr(system, key, clean[key])
    # Only the chosen Type's secrets: another Type's, never checked, are not stored.
    for key in _typed_secrets(clean):
        setattr(system, encrypted_column(key), encrypt_secret(clean[key]))
    system.drop_unused_profile_requests()
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


def _typed_secrets(clean: Mapping[str, Any]) -> frozenset[str]:
    """Return the secrets of the chosen Type that were typed (and are saved)."""
    return frozenset(key for key in SECRET_FIELDS if clean[key]) & used_fields(clean)


def _secret_differs(system: AuthSystem, typed: str, name: str = "client_secret") -> bool:
    """Tell whether a typed secret replaces the stored one by a different value."""
    if not typed:
        return False
    try:
        return not hmac.compare_digest(read_secret(system, name).encode(), typed.encode())
    except SecretUnreadable:
        return True


def hidden_from_members(system: AuthSystem) -> str | None:
    """Say why members don't see a system its Alternate Login offers them, or None.

    The login page lists only Enabled systems (DESIGN.md), so a saved system in
    *Local and Remote Logins* or *Remote Login Only* stays invisible until Enabled is ticked.
    """
    if system.enabled or system.login_mode not in PUBLIC_LOGIN_MODES:
        return None
    enabled = LABELS["enabled"]
    return (
        f"Not shown to members on the sign-in page until {enabled} is ticked "
        f"({LABELS['login_mode']} is {system.login_mode_label}, but {enabled} is not)."
    )


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
    clean = _validated(data, None)
    event = _SaveEvent(audit.SYSTEM_CREATED, {}, _typed_secrets(clean), actor, audit_details)
    return _save(AuthSystem(), clean, event, commit)


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
    clean = _validated(data, system)
    before = auth_system_data(system)
    changed = frozenset(k for k in _typed_secrets(clean) if _secret_differs(system, clean[k], k))
    event = _SaveEvent(audit.SYSTEM_UPDATED, before, changed, actor, audit_details)
    return _save(system, clean, event, commit)


@dataclass(frozen=True)
class _SaveEvent:
    """What a save records in the audit log."""

    kind: str
    #: The settings before the save (empty for a new system).
    before: Mapping[str, Any]
    #: The secret fields given a new value.
    secrets_changed: frozenset[str]
    actor: User | None
    details: Mapping[str, Any] | None


def _validated(data: Mapping[str, Any], system: AuthSystem | None) -> dict[str, Any]:
    """Return ``data`` cleaned, or raise AuthSystemInvalid with its problems."""
    errors = validate_auth_system_data(data, system=system)
    if errors:
        raise AuthSystemInvalid(errors)
    return _clean(data)


def _save(system: AuthSystem, clean: dict[str, Any], event: _SaveEvent, commit: bool) -> AuthSystem:
    """Copy ``clean`` onto ``system`` and record what changed (nothing when nothing did)."""
    _apply(system, clean)
    db.session.add(system)
    # Flush first: a unique-name race must surface here, not in the audit purge's statement.
    _commit_or_conflict(flush_only=True)
    after = auth_system_data(system)
    changes = diff_auth_system_data(event.before, after, secrets_changed=event.secrets_changed)
    if changes:
        details = {"changes": changes, **(event.details or {})}
        audit.record_event(event.kind, actor=event.actor, system=system, details=details)
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
