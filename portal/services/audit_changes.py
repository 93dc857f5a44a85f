"""Field-by-field changes of an authentication system, as the audit log shows them.

Nothing here is ever a secret: the write-only secrets show as "changed", and literal credentials
in headers and body templates are masked (placeholders stay readable).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from portal.extensions import db
from portal.models import Team
from portal.sso.fields import (
    BODY,
    FIELDS,
    HEADERS,
    LABELS,
    LOGIN_MODES,
    PROFILE_REQUEST_FIELDS,
    SECRET_FIELDS,
    TYPES,
)
from portal.sso.profile_fields import FIELD_OPTIONS, PARAM_OPTIONS, PROFILE_FIELDS

#: What the audit log stores instead of a value that must stay secret.
HIDDEN = "[hidden]"

#: A header, body or JSON key whose literal value is likely a credential.
_SENSITIVE_NAME = re.compile(r"secret|passw|token|key|auth|cookie|assertion|signature", re.I)
_PLACEHOLDER_ONLY = re.compile(r"^\s*(?:[A-Za-z]+\s+)?(?:%[A-Za-z0-9]+(?::[^%\s]+)?%\s*)+$")


def _team_name(team_id: Any) -> str:
    if team_id in (None, ""):
        return "None"
    team = db.session.get(Team, team_id) if isinstance(team_id, int) else None
    return team.name if team is not None else f"team {team_id} (deleted)"


def _mask_headers(text: str) -> str:
    """Hide literal values of credential-looking headers; placeholders stay readable."""
    lines = []
    for line in (text or "").splitlines():
        name, sep, value = line.partition(":")
        if sep and _SENSITIVE_NAME.search(name) and not _PLACEHOLDER_ONLY.match(value):
            line = f"{name}: {HIDDEN}"
        lines.append(line)
    return "\n".join(lines)


_FORM_PAIR = re.compile(r"(?P<key>[^&=\s]+)=(?P<value>[^&]*)")
_JSON_PAIR = re.compile(r'"(?P<key>[^"\\]+)"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\]|\\.)*)"')


def _mask_body(text: str) -> str:
    """Hide literal values of credential-looking keys in a form or JSON body template."""

    def hide(match: re.Match[str]) -> str:
        key, value = match.group("key"), match.group("value")
        if not _SENSITIVE_NAME.search(key) or _PLACEHOLDER_ONLY.match(value) or not value:
            return match.group(0)
        if "sep" in match.groupdict():
            return f'"{key}"{match.group("sep")}"{HIDDEN}"'
        return f"{key}={HIDDEN}"

    if (text or "").lstrip().startswith(("{", "[")):
        return _JSON_PAIR.sub(hide, text)
    return _FORM_PAIR.sub(hide, text or "")


def _shown(key: str, value: Any) -> str:
    """Return the readable form of one field's value, as the audit screen shows it."""
    if key == "onboarding_team_id":
        return _team_name(value)
    if key == "login_mode":
        return LOGIN_MODES.get(value, str(value or ""))
    if key == "type":
        return TYPES.get(value, str(value or ""))
    if isinstance(value, bool):
        return "Yes" if value else "No"
    kind = FIELDS[key].kind if key in FIELDS else None
    if kind == HEADERS:
        return _mask_headers(str(value or ""))
    if kind == BODY:
        return _mask_body(str(value or ""))
    return "" if value is None else str(value)


def _unused_request_method(key: str, *datas: Mapping[str, Any]) -> bool:
    """Tell whether ``key`` is the method of a profile request unused on both sides.

    An empty request is not sent, so its method (GET by default) is no setting to report.
    """
    position = FIELDS[key].profile_request if key in FIELDS else 0
    if not position or key != PROFILE_REQUEST_FIELDS[position]["method"]:
        return False
    parts = PROFILE_REQUEST_FIELDS[position]
    return not any(d.get(parts[p]) for d in datas for p in ("url", "headers", "body"))


def diff_auth_system_data(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    secret_changed: bool = False,
    secrets_changed: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Return the fields that differ between two ``auth_system_data`` dicts, in form order.

    Each change is ``{"field", "label", "old", "new"}`` with readable values; the Client
    Secret (when ``secret_changed``) and every other write-only secret in ``secrets_changed``
    is ``{"field", "label", "changed": True}`` and nothing else.
    """
    changed = {*secrets_changed, *(["client_secret"] if secret_changed else [])}
    changes: list[dict[str, Any]] = []
    for key, label in LABELS.items():
        if key in SECRET_FIELDS:
            if key in changed:
                changes.append({"field": key, "label": label, "changed": True})
            continue
        if _unused_request_method(key, before, after):
            continue
        old, new = _shown(key, before.get(key)), _shown(key, after.get(key))
        if old != new:
            changes.append({"field": key, "label": label, "old": old, "new": new})
    old_params = before.get("params") or {}
    new_params = after.get("params") or {}
    for key, label in PROFILE_FIELDS:
        old_row, new_row = old_params.get(key) or {}, new_params.get(key) or {}
        old, new = str(old_row.get("path") or ""), str(new_row.get("path") or "")
        if old != new:
            changes.append(
                {"field": f"params.{key}.path", "label": f"{label} path", "old": old, "new": new}
            )
        for option in FIELD_OPTIONS[key]:
            option_label = PARAM_OPTIONS[option]
            old_on, new_on = bool(old_row.get(option)), bool(new_row.get(option))
            if old_on != new_on:
                changes.append(
                    {
                        "field": f"params.{key}.{option}",
                        "label": f"{label}: {option_label}",
                        "old": _shown(option, old_on),
                        "new": _shown(option, new_on),
                    }
                )
    return changes
