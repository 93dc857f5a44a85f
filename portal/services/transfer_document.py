"""The export document's objects: their keys, and reading them into checked service values.

``read_system`` and ``read_mapping`` check the document's ``auth_system`` and ``group_mapping``
objects, report every problem through ``add`` and resolve teams and member groups by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from portal.extensions import db
from portal.models import MemberGroup, Team
from portal.models.group import ROLE_KINDS, RULE_KINDS, SINGLE_VALUE_KINDS
from portal.services.auth_system_validation import param_error_key
from portal.services.group_mapping import parse_email_domains, required_claim_problem
from portal.services.groups import GroupError, parse_values
from portal.sso.fields import (
    EXPORTED_FIELDS,
    FIELDS,
    FLAG,
    FLAG_FIELDS,
    LABELS,
    NUMBER,
    NUMBER_FIELDS,
    SECRET_FIELDS,
    TEAM,
    encrypted_column,
)
from portal.sso.profile_fields import FIELD_LABEL, PARAM_OPTIONS, PROFILE_FIELDS

#: The marker key of an export, and the version of the format this code writes and reads.
FORMAT_KEY = "portal_export"
FORMAT_VERSION = 1

#: Keys of ``auth_system`` that hold text, in form order (the secret is never one of them).
SYSTEM_TEXT_KEYS: tuple[str, ...] = tuple(
    name for name in EXPORTED_FIELDS if FIELDS[name].kind not in (FLAG, TEAM, NUMBER)
)
#: Every key ``auth_system`` may hold, in the order an export writes them.
SYSTEM_KEYS: tuple[str, ...] = (
    *SYSTEM_TEXT_KEYS,
    "onboarding_team",
    *FLAG_FIELDS,
    *NUMBER_FIELDS,
    "params",
    *(encrypted_column(name) for name in SECRET_FIELDS),
)
MAPPING_KEYS: tuple[str, ...] = (
    "default_group",
    "restrict_sign_in",
    "allowed_statuses",
    "deny_message",
    "group_object_key",
    "allowed_email_domains",
    "required_claim",
    "required_claim_message",
    "existing_accounts_only",
    "existing_accounts_message",
    "rules",
)
RULE_KEYS: tuple[str, ...] = ("kind", "values", "group")
#: Same message as the mapping screen gives.
RESTRICT_WITHOUT_STATUS = (
    "List at least one Membership Status that may sign in, or turn the restriction off."
)

#: Reports one problem, for people.
Add = Callable[[str], None]


class ImportInvalid(ValueError):
    """An imported document cannot be applied; ``problems`` lists every reason, for people."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("The configuration file cannot be imported.")
        self.problems = problems


def _names(keys: Any) -> str:
    return ", ".join(f'"{str(k)[:60]}"' for k in keys)


def check_keys(obj: dict[str, Any], allowed: tuple[str, ...], where: str, add: Add) -> None:
    """Report the keys of ``obj`` that are not ``allowed``."""
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        add(f"{where}: unknown key(s) {_names(unknown)} (known: {', '.join(allowed)}).")


def check_marker(doc: Any) -> dict[str, Any]:
    """Return ``doc`` when it is a Portal export this code reads; raise ImportInvalid if not."""
    if not isinstance(doc, dict):
        raise ImportInvalid(["The file must hold a JSON object; it is not a Portal export."])
    version = doc.get(FORMAT_KEY)
    if version is None:
        raise ImportInvalid([f'This is not a Portal export: the "{FORMAT_KEY}" marker is missing.'])
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise ImportInvalid(
            [
                f'This file is a Portal export of format version "{str(version)[:20]}"; '
                f"this site reads version {FORMAT_VERSION}."
            ]
        )
    return doc


def _find_team(name: str) -> Team | None:
    return db.session.scalar(sa.select(Team).where(Team.name_key == name.lower()))


def _find_group(name: str) -> MemberGroup | None:
    return db.session.scalar(sa.select(MemberGroup).where(MemberGroup.name_key == name.casefold()))


def read_system(raw: Any, add: Add) -> tuple[dict[str, Any], set[str], dict[str, str]]:
    """Check the ``auth_system`` object; return the service data, the ill-typed keys, and
    the encrypted secrets it carries, by secret field (those it carries)."""
    data: dict[str, Any] = {}
    bad: set[str] = set()
    if not isinstance(raw, dict):
        add('The file has no "auth_system" object.')
        return data, {"name"}, {}
    for name in SECRET_FIELDS:
        if name not in raw:
            continue
        # Never echoed: the value may be a live secret.
        where = (
            "type it on the import form, or give it to the command line with --client-secret-file"
            if name == "client_secret"
            else "export it with --include-secret, or type it in the form after importing"
        )
        add(f"{LABELS[name]}: a plaintext {name} is not accepted in a file; {where}.")
    check_keys(
        {k: v for k, v in raw.items() if k not in SECRET_FIELDS}, SYSTEM_KEYS, "auth_system", add
    )
    for key in SYSTEM_TEXT_KEYS:
        if key not in raw:
            continue
        if isinstance(raw[key], str):
            data[key] = raw[key]
        else:
            add(f"{LABELS[key]}: must be text (a JSON string).")
            bad.add(key)
    for key in FLAG_FIELDS:
        if key not in raw:
            continue
        if isinstance(raw[key], bool):
            data[key] = raw[key]
        else:
            add(f"{LABELS[key]}: must be true or false.")
    for key in NUMBER_FIELDS:
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, int) and not isinstance(value, bool):
            data[key] = value  # its range is the form's rule, checked with the rest
        else:
            add(f"{LABELS[key]}: must be a whole number (a JSON number).")
            bad.add(key)
    team = raw.get("onboarding_team")
    if team is not None and not isinstance(team, str):
        add(f"{LABELS['onboarding_team_id']}: must be a team's name or null.")
    elif team and team.strip():
        found = _find_team(team.strip())
        if found is None:
            add(
                f'{LABELS["onboarding_team_id"]}: no team named "{team.strip()[:120]}" exists '
                'on this site; create it first, or set "onboarding_team" to null.'
            )
        else:
            data["onboarding_team_id"] = found.id
    if "params" in raw:
        params = _read_params(raw["params"], add)
        if params is None:
            bad.add(param_error_key("user_id"))
        else:
            data["params"] = params
    encrypted: dict[str, str] = {}
    for name in SECRET_FIELDS:
        key = encrypted_column(name)
        secret = raw.get(key, "")
        if not isinstance(secret, str):
            add(f"{LABELS[name]}: {key} must be text (a JSON string).")
        elif secret:
            encrypted[name] = secret
    return data, bad, encrypted


def _read_params(raw: Any, add: Add) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        add("Profile parameters: params must be an object with one entry per field.")
        return None
    check_keys(raw, tuple(FIELD_LABEL), "Profile parameters", add)
    params: dict[str, Any] = {}
    ok = True
    for key, label in PROFILE_FIELDS:
        row = raw.get(key)
        if row is None:
            continue
        # Every option key is read (files exported before a field stopped offering one carry
        # it); the service keeps only the options the field offers.
        allowed = ("path", *PARAM_OPTIONS)
        if not isinstance(row, dict):
            add(f"{label}: must be an object with {', '.join(allowed)}.")
            ok = False
            continue
        check_keys(row, allowed, label, add)
        if not isinstance(row.get("path", ""), str):
            add(f"{label}: path must be text (a JSON string).")
            ok = False
        for option in allowed[1:]:
            if not isinstance(row.get(option, False), bool):
                add(f"{label}: {option} must be true or false.")
                ok = False
        params[key] = {k: row[k] for k in allowed if k in row}
    return params if ok else None


def read_mapping(raw: Any, add: Add) -> dict[str, Any]:
    """Check the ``group_mapping`` object; return settings and rules with group ids."""
    mapping: dict[str, Any] = {
        "default_group_id": None,
        "restrict_sign_in": False,
        "allowed_statuses": [],
        "deny_message": "",
        "group_object_key": "",
        "allowed_email_domains": [],
        "required_claim": "",
        "required_claim_message": "",
        "existing_accounts_only": False,
        "existing_accounts_message": "",
        "rules": [],
    }
    if raw is None:
        return mapping
    where = "Group mapping"
    if not isinstance(raw, dict):
        add(f"{where}: group_mapping must be an object.")
        return mapping
    check_keys(raw, MAPPING_KEYS, where, add)
    group = raw.get("default_group")
    if group is not None and not isinstance(group, str):
        add(f"{where}: default_group must be a member group's name or null.")
    elif group and group.strip():
        found = _find_group(group.strip())
        if found is None:
            add(f'{where}: no member group named "{group.strip()[:120]}" exists on this site.')
        else:
            mapping["default_group_id"] = found.id
    restrict = raw.get("restrict_sign_in", False)
    if not isinstance(restrict, bool):
        add(f"{where}: restrict_sign_in must be true or false.")
        restrict = False
    mapping["restrict_sign_in"] = restrict
    statuses = raw.get("allowed_statuses", [])
    if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
        add(f"{where}: allowed_statuses must be a list of texts.")
    else:
        mapping["allowed_statuses"] = parse_values("\n".join(statuses))
        if restrict and not mapping["allowed_statuses"]:
            add(f"{where}: {RESTRICT_WITHOUT_STATUS}")
    texts = (
        ("deny_message", None),
        ("group_object_key", 120),
        ("required_claim", None),
        ("required_claim_message", None),
        ("existing_accounts_message", None),
    )
    for key, limit in texts:
        value = raw.get(key, "")
        if not isinstance(value, str):
            add(f"{where}: {key} must be text (a JSON string).")
        elif limit is not None and len(value.strip()) > limit:
            add(f"{where}: {key} must be at most {limit} characters.")
        else:
            mapping[key] = value.strip()
    _read_access_rules(raw, mapping, where, add)
    rules = raw.get("rules", [])
    if not isinstance(rules, list):
        add(f"{where}: rules must be a list.")
        return mapping
    for number, rule in enumerate(rules, start=1):
        checked = _read_rule(rule, f"{where}, rule {number}", add)
        if checked is not None:
            mapping["rules"].append(checked)
    return mapping


def _read_access_rules(raw: dict[str, Any], mapping: dict[str, Any], where: str, add: Add) -> None:
    """Check the access rules with the mapping screen's own checks and messages."""
    domains = raw.get("allowed_email_domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        add(f"{where}: allowed_email_domains must be a list of texts.")
    else:
        try:
            mapping["allowed_email_domains"] = parse_email_domains("\n".join(domains))
        except GroupError as exc:
            add(f"{where}: allowed_email_domains: {exc}")
    if mapping["required_claim"]:
        problem = required_claim_problem(mapping["required_claim"])
        if problem:
            add(f"{where}: {problem}")
    only = raw.get("existing_accounts_only", False)
    if not isinstance(only, bool):
        add(f"{where}: existing_accounts_only must be true or false.")
    else:
        mapping["existing_accounts_only"] = only


def _read_rule(rule: Any, where: str, add: Add) -> dict[str, Any] | None:
    if not isinstance(rule, dict):
        add(f"{where}: must be an object with kind, values and group.")
        return None
    check_keys(rule, RULE_KEYS, where, add)
    ok = True
    kind = rule.get("kind")
    if kind not in RULE_KINDS:
        add(f'{where}: kind must be one of {", ".join(RULE_KINDS)} (got "{str(kind)[:40]}").')
        ok = False
    values = rule.get("values")
    shown: list[str] = []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        add(f"{where}: values must be a list of texts.")
        ok = False
    else:
        shown = parse_values("\n".join(values))
        if not shown:
            add(f"{where}: type at least one value.")
            ok = False
        elif kind in SINGLE_VALUE_KINDS and len(shown) != 1:
            add(f'{where}: "{RULE_KINDS[kind]}" takes exactly one value per rule.')
            ok = False
    group_name = rule.get("group")
    group = None
    if kind in ROLE_KINDS:
        if group_name is not None:
            add(f'{where}: "{RULE_KINDS[kind]}" gives the manager role; its group must be null.')
            ok = False
        return {"kind": kind, "values_display": shown, "group_id": None} if ok else None
    if not isinstance(group_name, str) or not group_name.strip():
        add(f"{where}: group must be a member group's name.")
        ok = False
    else:
        group = _find_group(group_name.strip())
        if group is None:
            add(f'{where}: no member group named "{group_name.strip()[:120]}" exists on this site.')
            ok = False
    if not ok or group is None:
        return None
    return {"kind": kind, "values_display": shown, "group_id": group.id}
