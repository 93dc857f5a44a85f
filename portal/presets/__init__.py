"""Provider presets: starting values for the authentication-system form, one JSON file each.

Each ``<key>.json`` file beside this module describes one identity provider as its own
documentation does: the URL templates, headers, body, Access Token Path and profile paths,
with the parts a community manager must complete marked ``{like-this}``. The form refuses a
value that still holds such a marker (see ``unfinished_markers``).

A preset names its connector ``type`` (``oauth2`` when absent, or ``personify`` for Personify
SSO). A preset whose provider has no sign-in Portal speaks has ``"supported": false``, an
explanation in its notes, and no form values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from portal.sso.fields import (
    CHOICE,
    FIELDS,
    FLAG,
    PRESET_FIELDS,
    TOKEN_METHODS,
    TYPE_OAUTH2,
    TYPE_PERSONIFY,
    TYPES,
    fields_of_type,
)
from portal.sso.profile_fields import FIELD_LABEL, ProfileParam, param_options

PRESETS_DIR = Path(__file__).resolve().parent

#: How far a preset was checked against the provider's documentation.
VERIFICATIONS = frozenset({"documented", "partial", "best-effort"})

#: Order of the "Start from" list: generic first, then the identity platforms, then the
#: WordPress plugins and association-management systems.
ORDER: tuple[str, ...] = (
    "generic-oidc",
    "okta",
    "auth0",
    "entra-id",
    "google",
    "salesforce",
    "wordpress-miniorange",
    "wordpress-wp-oauth-server",
    "novi-ams",
    "memberclicks",
    "yourmembership",
    "imis",
    "membes",
    "personify360",
)

# A marker is a brace-delimited name a manager replaces: {tenant}, {your-site}, {org_id}.
# It starts with a letter and holds only letters, digits, '-', '_' and '.', so JSON bodies
# ({"a": 1}) and JMESPath hashes ({a: b}) never look like one.
_MARKER_RE = re.compile(r"\{[A-Za-z][A-Za-z0-9_.-]*\}")


def unfinished_markers(text: str | bool | None) -> list[str]:
    """Return the ``{...}`` markers still in ``text`` (each once, in order of appearance).

    A flag's value (true or false) holds none.
    """
    found: list[str] = []
    for marker in _MARKER_RE.findall(text if isinstance(text, str) else ""):
        if marker not in found:
            found.append(marker)
    return found


def marker_messages(text: str | bool | None) -> list[str]:
    """Return one validation message per unfinished marker: ``Replace {tenant} with your value.``"""
    return [f"Replace {marker} with your value." for marker in unfinished_markers(text)]


@dataclass(frozen=True)
class Preset:
    """One provider's starting configuration."""

    key: str
    name: str
    #: The page the values follow.
    documentation_url: str
    #: Other pages consulted.
    references: tuple[str, ...]
    #: What the manager should know or check, one paragraph each.
    notes: tuple[str, ...]
    #: False when the provider does not speak OAuth 2.0: no form values then.
    supported: bool
    #: ``documented``, ``partial`` or ``best-effort`` (see docs/presets.md).
    verification: str
    #: Form values by field name (``PRESET_FIELDS``); empty when unsupported.
    form: Mapping[str, str | bool] = field(default_factory=dict)
    #: Profile parameters by key (``FIELD_LABEL``); empty when unsupported.
    params: Mapping[str, ProfileParam] = field(default_factory=dict)
    #: The connector type (``TYPES``) the form is set to.
    type: str = TYPE_OAUTH2

    def markers(self) -> list[str]:
        """Return every marker the manager must replace, in form order."""
        found: list[str] = []
        texts = [v for v in self.form.values() if isinstance(v, str)]
        for text in texts + [p.path for p in self.params.values()]:
            for marker in unfinished_markers(text):
                if marker not in found:
                    found.append(marker)
        return found

    def form_values(self) -> dict[str, Any]:
        """Return a value for every form field (empty when the preset leaves it blank)."""
        # A choice the preset leaves out takes its default (an unused request's method: GET).
        return {
            name: self.form.get(
                name, FIELDS[name].default if FIELDS[name].kind in (CHOICE, FLAG) else ""
            )
            for name in PRESET_FIELDS
        }

    def param_values(self) -> dict[str, dict[str, Any]]:
        """Return every profile parameter as ``{"path", "can_upgrade", "must_supply"}``."""
        return {
            key: {
                "path": param.path,
                "can_upgrade": param.can_upgrade,
                "must_supply": param.must_supply,
            }
            for key in FIELD_LABEL
            for param in [self.params.get(key, ProfileParam(""))]
        }

    def form_data(self) -> dict[str, Any]:
        """Return the preset as the admin form's data (``validate_auth_system_data`` shape).

        Only the fields a preset fills: the caller adds Name, Client ID, Client Secret etc.
        """
        return {**self.form_values(), "params": self.param_values()}

    def with_markers_replaced(self, values: Mapping[str, str]) -> Preset:
        """Return a copy with each ``{marker}`` replaced by ``values[marker]`` when given."""

        def fill(text: str) -> str:
            return _MARKER_RE.sub(lambda m: values.get(m.group(0), m.group(0)), text)

        return replace(
            self,
            form={
                name: fill(value) if isinstance(value, str) else value
                for name, value in self.form.items()
            },
            params={
                key: ProfileParam(fill(p.path), p.can_upgrade, p.must_supply)
                for key, p in self.params.items()
            },
        )


class PresetError(ValueError):
    """A preset data file is malformed (a packaging or editing mistake, not user input)."""


def _require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise PresetError(f"preset {key!r}: {message}")


def _load(path: Path) -> Preset:
    raw = json.loads(path.read_text(encoding="utf-8"))
    key = raw.get("key")
    _require(key == path.stem, str(key), f"key must equal the file name {path.stem!r}")
    supported = raw.get("supported", True)
    verification = raw.get("verification", "")
    _require(isinstance(supported, bool), key, "supported must be true or false")
    _require(verification in VERIFICATIONS, key, f"verification must be one of {VERIFICATIONS}")
    _require(bool(raw.get("name")), key, "name is required")
    _require(str(raw.get("documentation_url", "")).startswith("https://"), key, "doc URL")
    notes = raw.get("notes", [])
    _require(isinstance(notes, list) and bool(notes), key, "notes must be a non-empty list")

    form = raw.get("form", {})
    params_raw = raw.get("params", {})
    _require(isinstance(form, dict) and isinstance(params_raw, dict), key, "form/params objects")
    unknown = set(form) - set(PRESET_FIELDS)
    _require(not unknown, key, f"unknown form fields {sorted(unknown)}")
    unknown = set(params_raw) - set(FIELD_LABEL)
    _require(not unknown, key, f"unknown params {sorted(unknown)}")
    # A flag (Accept sign-ins started by the platform) is true or false; the rest is text.
    _require(
        all(isinstance(v, bool if FIELDS[k].kind == FLAG else str) for k, v in form.items()),
        key,
        "form values must be strings (flags true or false)",
    )
    type_ = raw.get("type", TYPE_OAUTH2)
    _require(type_ in TYPES, key, f"type must be one of {sorted(TYPES)}")
    foreign = set(form) - set(fields_of_type(type_))
    _require(not foreign, key, f"fields {sorted(foreign)} are not used by type {type_!r}")
    if not supported:
        _require(not form and not params_raw, key, "an unsupported preset has no form values")
    elif type_ == TYPE_PERSONIFY:
        urls = ("sso_login_url", "sso_web_service_url", "ims_web_service_url")
        _require(all(form.get(name) for name in urls), key, "URLs")
        _require(bool(params_raw.get("user_id", {}).get("path")), key, "user_id path")
    else:
        _require(bool(form.get("login_url")) and bool(form.get("token_url")), key, "URLs")
        _require(bool(params_raw.get("user_id", {}).get("path")), key, "user_id path")
        _require(form.get("token_method", "POST") in TOKEN_METHODS, key, "token_method")

    # An option the field does not offer (must_supply on the always-required User ID, say)
    # is read as off, as the form and the service read it.
    params = {
        name: ProfileParam(path=str(p.get("path", "")), **param_options(name, p))
        for name, p in params_raw.items()
    }
    return Preset(
        key=key,
        name=str(raw["name"]),
        documentation_url=str(raw["documentation_url"]),
        references=tuple(str(u) for u in raw.get("references", [])),
        notes=tuple(str(n) for n in notes),
        supported=supported,
        verification=verification,
        form=dict(form),
        params=params,
        type=type_,
    )


@cache
def _all() -> dict[str, Preset]:
    presets = {p.key: p for p in (_load(path) for path in sorted(PRESETS_DIR.glob("*.json")))}
    rank = {key: i for i, key in enumerate(ORDER)}
    return dict(sorted(presets.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def list_presets() -> list[Preset]:
    """Return every preset, in the order of the "Start from" list."""
    return list(_all().values())


def get_preset(key: str) -> Preset | None:
    """Return the preset with this key, or None."""
    return _all().get(key)
