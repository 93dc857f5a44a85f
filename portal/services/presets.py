"""Starting points of the authentication-system form: provider presets and issuer discovery.

The admin's Add form offers *Start from* (a preset from ``portal.presets``) and, on Add and
Edit, *Import from issuer* (OpenID Connect discovery through ``portal.sso.discovery``). Both
only compute form values: nothing here saves, and the form's validation decides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from portal.config import http_settings
from portal.presets import Preset, get_preset, list_presets, marker_messages, unfinished_markers
from portal.services.auth_system_validation import address_policy_problem
from portal.services.auth_systems import default_auth_system_data
from portal.sso.discovery import CLIENT_SECRET_POST, discover_issuer
from portal.sso.errors import SSOError
from portal.sso.fields import LABELS, POLICY_URL_FIELDS
from portal.sso.http import get_http_client

log = logging.getLogger(__name__)

#: How each token authentication method shows in the form, for the import's notice.
AUTH_METHOD_TEXT: dict[str, str] = {
    "client_secret_basic": "client_secret_basic (an Authorization: Basic header)",
    CLIENT_SECRET_POST: "client_secret_post (client_id and client_secret in the body)",
}


#: Fields discovery always sets: together they are how the token request authenticates.
TOKEN_REQUEST_FIELDS = frozenset({"token_url", "token_method", "token_headers", "token_body"})


@dataclass(frozen=True)
class PresetStart:
    """What the Add form starts from: the defaults, with a preset's values over them."""

    #: The chosen preset (None: the defaults, or an unknown key).
    preset: Preset | None
    #: The form's starting data (``validate_auth_system_data`` shape).
    data: dict[str, Any]
    #: Why nothing was filled, for an unknown key; empty otherwise.
    message: str = ""

    @property
    def fills_form(self) -> bool:
        """Whether the form can be used: no preset, or one whose sign-in Portal speaks."""
        return self.preset is None or self.preset.supported


def preset_choices() -> list[tuple[str, str]]:
    """Return the *Start from* choices, (key, name), in the presets' order."""
    return [(preset.key, preset.name) for preset in list_presets()]


def start_from_preset(key: str | None) -> PresetStart:
    """Return the Add form's starting data for the preset ``key`` (blank: the defaults).

    A preset replaces every field it may fill (a field it leaves blank is blank, except the
    Access Token Path, whose default ``access_token`` stands) and every profile parameter.
    An unsupported preset fills nothing; an unknown key gives the defaults and a message.
    """
    data = default_auth_system_data()
    key = (key or "").strip()
    if not key:
        return PresetStart(None, data)
    preset = get_preset(key)
    if preset is None:
        return PresetStart(
            None, data, "There is no such preset; the form starts from the defaults."
        )
    if preset.supported:
        data["type"] = preset.type
        data.update(preset.form_values())
        data["access_token_path"] = data["access_token_path"] or "access_token"
        data["token_method"] = data["token_method"] or "POST"
        data["params"] = preset.param_values()
    return PresetStart(preset, data)


class IssuerImportFailed(Exception):
    """Import from issuer did not work; ``message`` says why, for the Issuer URL field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class IssuerImport:
    """The form values discovery changes, and a notice saying what was filled."""

    values: dict[str, str] = field(default_factory=dict)
    notice: str = ""


def import_from_issuer(issuer_url: str, current: Mapping[str, Any]) -> IssuerImport:
    """Discover ``issuer_url`` and return the form values to change; raise IssuerImportFailed.

    Every field discovery gives a value for is replaced, and the token request's headers and
    body always are (they carry the client authentication discovery chose: a Basic header
    left beside a body secret would send it twice). An optional field it has nothing for (no
    userinfo or end-session endpoint, say) keeps what ``current`` holds, unless that is a
    preset's unfinished ``{marker}``, which is cleared: discovery has answered for it.
    """
    issuer_url = (issuer_url or "").strip()
    if not issuer_url:
        raise IssuerImportFailed(
            "Enter the provider's issuer URL, e.g. https://example.okta.com/oauth2/default."
        )
    markers = marker_messages(issuer_url)
    if markers:
        raise IssuerImportFailed(" ".join(markers))
    refused = address_policy_problem(issuer_url, "Issuer URL")
    if refused:
        raise IssuerImportFailed(refused)
    try:
        found = discover_issuer(issuer_url, get_http_client(http_settings()))
    except SSOError as exc:
        # The code and host only: the message is for the page, the log needs no more.
        log.info("Import from issuer %s failed: %s", _host(issuer_url), exc.code)
        raise IssuerImportFailed(exc.user_message) from None

    discovered = found.form_values()
    for name in POLICY_URL_FIELDS:
        label = f"{LABELS[name]} the discovery document gives"
        refused = address_policy_problem(discovered.get(name) or "", label)
        if refused:
            log.info("Import from issuer %s refused: %s", _host(issuer_url), name)
            raise IssuerImportFailed(refused)
    values: dict[str, str] = {}
    for name, value in discovered.items():
        if value or name in TOKEN_REQUEST_FIELDS:
            values[name] = value
        elif unfinished_markers(str(current.get(name) or "")):
            values[name] = ""
    method = AUTH_METHOD_TEXT.get(found.token_auth_method, found.token_auth_method)
    notice = (
        f"Filled from {found.discovery_url}; the token request authenticates with {method}"
        f"{' and uses PKCE' if found.pkce else ''}. Check the values, complete the rest of "
        "the form and press Save: nothing is saved until then."
    )
    return IssuerImport(values, notice)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
