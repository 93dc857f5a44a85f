"""Export and import of one authentication system's configuration as a JSON document.

The document (see ``docs/export-import.md``)::

    {
      "portal_export": 1,
      "auth_system": {"type": ..., "name": ..., ..., "onboarding_team": "Staff" | null,
                      "params": {"user_id": {"path": ..., "can_upgrade": ..., ...}, ...}},
      "group_mapping": {"default_group": ..., "restrict_sign_in": ..., "allowed_statuses": [...],
                        "deny_message": ..., "group_object_key": ...,
                        "allowed_email_domains": [...], "required_claim": ...,
                        "required_claim_message": ..., "existing_accounts_only": ...,
                        "existing_accounts_message": ..., "rules": [...]}
    }

Teams and member groups travel by *name* (ids differ between sites). The client secret is
never in the document, except encrypted with the site's keys as
``auth_system.client_secret_encrypted`` when the CLI is asked for it; a plaintext
``client_secret`` in a file is refused, so a secret never sits readable in a file we made
people pass around. An import is checked as a whole (the form's own validation, plus the
document's shape and the names it refers to), every problem is reported at once, and
nothing is written unless there is none: the system, its mapping settings and its rules
are saved in one transaction.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import AuthSystem, User
from portal.services import audit
from portal.services.auth_system_validation import param_error_key
from portal.services.auth_systems import (
    AuthSystemInvalid,
    auth_system_data,
    create_auth_system,
    get_system_by_name,
    read_secret,
    stored_secrets,
    update_auth_system,
    validate_auth_system_data,
)
from portal.services.group_mapping import (
    apply_mapping_settings,
    get_mapping_settings,
    list_rules,
    new_rule,
    settings_changes,
    settings_shown,
)
from portal.services.groups import rule_text
from portal.services.secrets import SecretUnreadable, decrypt_secret, encrypt_secret
from portal.services.transfer_document import (
    FORMAT_KEY,
    FORMAT_VERSION,
    SYSTEM_TEXT_KEYS,
    ImportInvalid,
    check_keys,
    check_marker,
    read_mapping,
    read_system,
)
from portal.sso.fields import (
    FLAG_FIELDS,
    LABELS,
    NUMBER_FIELDS,
    SECRET_FIELDS,
    TYPE_OAUTH2,
    encrypted_column,
)
from portal.sso.profile_fields import FIELD_OPTIONS, PROFILE_FIELDS

#: The largest document an import reads.
MAX_DOCUMENT_BYTES = 1_048_576

#: How deep a document may nest. An export is four levels deep (document, auth_system,
#: params, one parameter); the margin is for hand-edited files. A limit also keeps the JSON
#: parser's recursion away from Python's stack limit.
MAX_DEPTH = 32
#: Where an import's Client Secret can come from, for the messages that need one.
SECRET_HINT = (
    "Give it with the import: in the file (exported with --include-secret), with "
    "--client-secret-file, or in the Client Secret field of the import page."
)


# --- export -------------------------------------------------------------------------------


def _param_out(key: str, values: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": values["path"]}
    for option in FIELD_OPTIONS[key]:
        row[option] = values[option]
    return row


def export_auth_system(system: AuthSystem, *, include_secret: bool = False) -> dict[str, Any]:
    """Return the export document of ``system``.

    The secrets are left out unless ``include_secret``, which adds each stored one encrypted
    with this site's newest key as ``<name>_encrypted`` (raise SecretUnreadable when a stored
    one can't be read).
    """
    data = auth_system_data(system)
    out: dict[str, Any] = {key: data[key] for key in SYSTEM_TEXT_KEYS}
    out["onboarding_team"] = system.onboarding_team.name if system.onboarding_team else None
    for key in FLAG_FIELDS:
        out[key] = data[key]
    for key in NUMBER_FIELDS:
        out[key] = data[key]
    out["params"] = {key: _param_out(key, data["params"][key]) for key, _ in PROFILE_FIELDS}
    if include_secret:
        for name in sorted(stored_secrets(system), key=SECRET_FIELDS.index):
            out[encrypted_column(name)] = encrypt_secret(read_secret(system, name))

    settings = get_mapping_settings(system)
    default_group = settings.default_group if settings.default_group_id else None
    mapping = {
        "default_group": default_group.name if default_group else None,
        "restrict_sign_in": bool(settings.restrict_sign_in),
        "allowed_statuses": list(settings.allowed_statuses_display or []),
        "deny_message": settings.deny_message or "",
        "group_object_key": settings.group_object_key or "",
        "allowed_email_domains": list(settings.allowed_email_domains or []),
        "required_claim": settings.required_claim or "",
        "required_claim_message": settings.required_claim_message or "",
        "existing_accounts_only": bool(settings.existing_accounts_only),
        "existing_accounts_message": settings.existing_accounts_message or "",
        "rules": [
            {
                "kind": rule.kind,
                "values": list(rule.values_display or []),
                "group": rule.group.name if rule.group else None,
            }
            for rule in list_rules(system)
        ],
    }
    return {FORMAT_KEY: FORMAT_VERSION, "auth_system": out, "group_mapping": mapping}


def dump_export(document: dict[str, Any]) -> str:
    """Return ``document`` as pretty-printed JSON in a stable key order, so files diff well."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- reading a file ------------------------------------------------------------------------


def parse_export(raw: bytes | str) -> Any:
    """Return the JSON value of an uploaded file; raise ImportInvalid when it is not JSON."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise ImportInvalid(["The file is larger than 1 MB; it is not a Portal export."])
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImportInvalid(["The file is not UTF-8 text; it is not a Portal export."]) from exc
    depth = _nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise ImportInvalid(
            [
                f"The file nests objects or lists more than {MAX_DEPTH} levels deep; a Portal "
                "export has four levels. It is not a Portal export."
            ]
        )
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        # The parser's message names a position, never the file's content.
        raise ImportInvalid(
            [f"The file is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."]
        ) from exc


_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _nesting_depth(text: str) -> int:
    """Return how deep the objects and lists of a JSON text nest (strings skipped).

    Stops counting once past ``MAX_DEPTH``, so a hostile file costs one linear scan.
    """
    depth = deepest = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group(0)
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        elif token in "]}":
            depth -= 1
    return deepest


def _label_of(key: str) -> str:
    for field, label in PROFILE_FIELDS:
        if key == param_error_key(field):
            return label
    return LABELS.get(key, key)


def _form_order(key: str) -> int:
    keys = [*LABELS, *(param_error_key(field) for field, _ in PROFILE_FIELDS)]
    return keys.index(key) if key in keys else len(keys)


def _validation_problems(errors: dict[str, list[str]], skip: set[str]) -> list[str]:
    """Return the form's messages, each after its field's label, in form order."""
    problems = []
    for key in sorted(errors, key=_form_order):
        if key in skip:
            continue
        label = _label_of(key)
        for message in errors[key]:
            problems.append(message if message.startswith(f"{label}:") else f"{label}: {message}")
    return problems


# --- import -------------------------------------------------------------------------------


def needs_client_secret(doc: Any, *, replace: bool = False) -> bool:
    """Tell whether importing ``doc`` needs a Client Secret the file does not carry.

    True for a new OAuth 2.0 system without ``client_secret_encrypted``; a replaced system
    keeps its stored secret when none is given, and other types have no Client Secret.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("auth_system"), dict):
        return False
    raw = doc["auth_system"]
    if raw.get("client_secret_encrypted") or raw.get("type", TYPE_OAUTH2) != TYPE_OAUTH2:
        return False
    name = raw.get("name")
    existing = get_system_by_name(name.strip()) if isinstance(name, str) and name.strip() else None
    return not (replace and existing is not None)


def import_auth_system(
    doc: Any, *, client_secret: str = "", replace: bool = False, actor: User | None = None
) -> AuthSystem:
    """Create (or, with ``replace``, overwrite) a system and its group mapping from ``doc``.

    ``client_secret`` wins over an encrypted one in the document; when replacing, neither
    keeps the stored secret. Raise ImportInvalid listing every problem; then nothing is
    written. The audit log records the import (by ``actor``) in the same transaction.
    """
    doc = check_marker(doc)
    problems: list[str] = []
    add = problems.append
    check_keys(doc, (FORMAT_KEY, "auth_system", "group_mapping"), "The file", add)
    data, bad_keys, encrypted = read_system(doc.get("auth_system"), add)

    secret = (client_secret or "").strip()
    typed = {"client_secret": secret} if secret else {}
    for name in SECRET_FIELDS:
        data[name] = typed.get(name, "")
        if data[name] or name not in encrypted:
            continue
        try:
            data[name] = decrypt_secret(encrypted[name])
        except (SecretUnreadable, ValueError):
            instead = (
                "give the Client Secret instead"
                if name == "client_secret"
                else ("import without it and type it in the form")
            )
            add(
                f"{LABELS[name]}: the encrypted {LABELS[name]} in the file cannot be decrypted "
                "with this site's PORTAL_ENCRYPTION_KEYS (it was exported by a site with other "
                f"keys); {instead}."
            )
            bad_keys.add(name)
    secret = data["client_secret"]

    name = str(data.get("name") or "").strip()
    existing = get_system_by_name(name) if name else None
    target = existing if replace else None
    errors = validate_auth_system_data(data, system=target)
    if target is not None and not secret and "client_secret" in errors:
        # The file changes where the stored secret would go: it must come with the import.
        errors["client_secret"] = [f"{m} {SECRET_HINT}" for m in errors["client_secret"]]
    problems.extend(_validation_problems(errors, bad_keys))
    if existing is not None and not replace:
        add("To overwrite the existing system, import again with Replace.")

    mapping = read_mapping(doc.get("group_mapping"), add)
    if problems:
        raise ImportInvalid(problems)
    try:
        return _write(target, data, mapping, actor)
    except AuthSystemInvalid as exc:  # a Name taken meanwhile (the unique constraints)
        db.session.rollback()
        raise ImportInvalid(_validation_problems(exc.errors, set())) from exc
    except IntegrityError as exc:
        db.session.rollback()
        raise ImportInvalid(
            ["Name: An authentication system with this Name or Redirect URL already exists."]
        ) from exc
    except Exception:
        db.session.rollback()
        raise


def _write(
    target: AuthSystem | None,
    data: dict[str, Any],
    mapping: dict[str, Any],
    actor: User | None,
) -> AuthSystem:
    """Save the system, its settings, its rules and their audit events in one transaction."""
    source = {"source": "import"}
    if target is None:
        system = create_auth_system(data, actor=actor, audit_details=source, commit=False)
    else:
        system = update_auth_system(target, data, actor=actor, audit_details=source, commit=False)

    settings = get_mapping_settings(system)
    settings_before = settings_shown(settings)
    rules_before = [rule_text(rule) for rule in list_rules(system)]
    apply_mapping_settings(
        settings,
        default_group_id=mapping["default_group_id"],
        restrict_sign_in=mapping["restrict_sign_in"],
        statuses=mapping["allowed_statuses"],
        deny_message=mapping["deny_message"],
        group_object_key=mapping["group_object_key"],
        allowed_email_domains=mapping["allowed_email_domains"],
        required_claim=mapping["required_claim"],
        required_claim_message=mapping["required_claim_message"],
        existing_accounts_only=mapping["existing_accounts_only"],
        existing_accounts_message=mapping["existing_accounts_message"],
    )
    db.session.add(settings)

    for rule in list_rules(system):
        db.session.delete(rule)
    rules_after = []
    for values in mapping["rules"]:
        rule = new_rule(system, values["kind"], values["values_display"], values["group_id"])
        db.session.add(rule)
        rules_after.append(rule_text(rule))
    _record_mapping_changes(
        system, settings_before, settings_shown(settings), rules_before, rules_after, actor
    )
    db.session.commit()
    return system


def _record_mapping_changes(
    system: AuthSystem,
    before: dict[str, str],
    after: dict[str, str],
    rules_before: list[str],
    rules_after: list[str],
    actor: User | None,
) -> None:
    """Add one "Group mapping changed" event listing what the import changed, if anything."""
    changes = settings_changes(before, after)
    changes += [
        {"field": "rule", "label": "Rule removed", "old": text, "new": ""}
        for text in rules_before
        if text not in rules_after
    ]
    changes += [
        {"field": "rule", "label": "Rule added", "old": "", "new": text}
        for text in rules_after
        if text not in rules_before
    ]
    if changes:
        audit.record_event(
            audit.MAPPING_CHANGED,
            actor=actor,
            system=system,
            details={"changes": changes, "source": "import"},
        )
