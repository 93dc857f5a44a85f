"""The rules an authentication system's settings follow: values, addresses, paths, PKCE, secret.

These checks read only the settings (and the app's address policy); the ones that ask the
database (a unique Name, an existing team) are ``auth_systems.validate_auth_system_data``'s.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from portal.presets import marker_messages
from portal.services.outbound import address_policy
from portal.sso.fields import (
    CHOICE_FIELDS,
    FIELDS,
    HEADER_FIELDS,
    LABELS,
    LOGIN_LOCAL_ONLY,
    NUMBER_FIELDS,
    POLICY_URL_FIELDS,
    PRESET_FIELDS,
    PROFILE_REQUEST_FIELDS,
    SECRET,
    SECRET_BOUND_FIELDS,
    SECRET_FIELDS,
    TEMPLATE_FIELDS,
    TEXT_FIELDS,
    TYPE_OAUTH2,
    TYPE_PERSONIFY,
    TYPES,
    URL,
    URL_FIELDS,
    fields_of_type,
)
from portal.sso.paths import path_limit_problem, validate_path
from portal.sso.personify import vendor_key_problem
from portal.sso.placeholders import (
    CLIENT_SECRET_PLACEHOLDERS,
    find_placeholders,
    render_sample,
    validate_header_lines,
    validate_template,
)
from portal.sso.profile_fields import PROFILE_FIELDS

LOCAL_HOSTS: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1"})
#: Fields of the token request that can carry the PKCE verifier.
VERIFIER_FIELDS: tuple[str, ...] = tuple(
    name for name, offered in TEMPLATE_FIELDS.items() if "CodeVerifier" in offered
)

Add = Callable[[str, str], None]


def whole_number(value: Any) -> Any:
    """Return a NUMBER field's value as an int when it is a whole number (blank: 0).

    Anything else is returned as it came (text stripped), for `settings_problems` to name.
    """
    if value is None or isinstance(value, bool):
        return 0 if value is None else value
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return 0
    if text.isascii() and text.isdigit() and len(text) <= 9:
        return int(text)
    return text


def param_error_key(field: str) -> str:
    """Return the key under which errors about a profile parameter's path are reported."""
    return f"params.{field}"


def used_fields(clean: Mapping[str, Any]) -> frozenset[str]:
    """Return the fields the chosen Type uses (an unknown Type is judged as OAuth 2.0)."""
    type_ = clean.get("type")
    return frozenset(fields_of_type(type_ if type_ in TYPES else TYPE_OAUTH2))


def settings_problems(
    clean: Mapping[str, Any], *, stored_secrets: Collection[str] = ()
) -> dict[str, list[str]]:
    """Return the problems of cleaned settings per field (``params.<key>`` for paths).

    Only the fields the chosen Type uses are required and checked (the others only for their
    length). ``stored_secrets``: the secrets the system being edited already holds, which a
    blank field keeps; a new system holds none.
    """
    errors: dict[str, list[str]] = {}
    used = used_fields(clean)

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    _check_values(clean, used, stored_secrets, add)
    # A {marker} a preset left (only in the fields presets fill: a Name, label or secret may
    # hold braces) is named; the field's address and path checks wait until it is replaced.
    for key in PRESET_FIELDS:
        if key in used:
            for message in marker_messages(clean[key]):
                add(key, message)
    _check_templates(clean, used, errors, add)
    if clean["type"] == TYPE_OAUTH2:
        _check_profile_requests(clean, add)
    if "jwks_url" in used and clean["jwks_url"] and not clean["issuer"]:
        add("issuer", "Issuer is required with a JWKS URL (both turn on ID token validation).")
    _check_paths(clean, used, errors, add)
    if clean["type"] == TYPE_PERSONIFY:
        for key, message in vendor_key_problem(
            clean["vendor_password"], clean["vendor_block"]
        ).items():
            add(key, message)
    return errors


def _required(clean: Mapping[str, Any], key: str) -> bool:
    field = FIELDS[key]
    return field.required or bool(field.required_with and clean[field.required_with])


def _check_values(
    clean: Mapping[str, Any], used: frozenset[str], stored_secrets: Collection[str], add: Add
) -> None:
    """Check required values, lengths and choices."""
    required = [key for key in FIELDS if key in used and _required(clean, key)]
    if clean["login_mode"] != LOGIN_LOCAL_ONLY:
        required.append("login_label")
    for key in required:
        # A secret left blank keeps the stored one.
        if not clean[key] and not (FIELDS[key].kind == SECRET and key in stored_secrets):
            add(key, f"{LABELS[key]} is required.")
    if not clean["params"]["user_id"]["path"]:
        add(param_error_key("user_id"), "User ID path is required.")
    for key in (*TEXT_FIELDS, *SECRET_FIELDS):
        limit = FIELDS[key].length
        if limit is not None and len(clean[key]) > limit:
            add(key, f"{LABELS[key]} must be at most {limit} characters.")
        shortest = FIELDS[key].min_length
        if clean[key] and len(clean[key]) < shortest:
            add(key, f"{LABELS[key]} must be at least {shortest} characters.")
    for key in CHOICE_FIELDS:
        field = FIELDS[key]
        if clean[key] not in (field.choices or {}):
            add(key, field.invalid_choice)
    for key in NUMBER_FIELDS:
        value, most = clean[key], FIELDS[key].maximum
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= (most or 0):
            add(key, f"{LABELS[key]} must be a whole number from 0 to {most}.")


def _check_templates(
    clean: Mapping[str, Any], used: frozenset[str], errors: dict[str, list[str]], add: Add
) -> None:
    """Check placeholders first; a template is then checked as a URL with dummy values."""
    for key in TEMPLATE_FIELDS:
        if clean[key] and key in used:
            for message in validate_template(clean[key], key):
                add(key, message)
    login_url = clean["login_url"] if "login_url" in used else ""
    if login_url and "State" not in find_placeholders(login_url):
        add("login_url", "The Identity Provider Login URL must contain %State%.")
    for key in HEADER_FIELDS:
        if key in used:
            for message in validate_header_lines(clean[key]):
                add(key, message)
    for key in URL_FIELDS:
        if clean[key] and key in used and key not in errors:
            url = _substituted(clean[key])
            problem = url_problem(url, LABELS[key])
            if not problem and key in POLICY_URL_FIELDS:
                problem = address_policy_problem(url, LABELS[key])
            if problem:
                add(key, problem)
    pkce = pkce_problem(clean) if "token_body" in used and "token_body" not in errors else None
    if pkce:
        add("token_body", pkce)


def _check_profile_requests(clean: Mapping[str, Any], add: Add) -> None:
    """Check the chain: requests in order without gaps, each with a URL, a body only with POST.

    An unused request (no URL, headers or body) is simply not sent.
    """
    previous_url = True
    for position, parts in PROFILE_REQUEST_FIELDS.items():
        url, headers, body = (clean[parts[p]] for p in ("url", "headers", "body"))
        if url and not previous_url:
            add(
                parts["url"],
                f"Fill the profile requests in order: the {LABELS[parts['url']]} is set but "
                f"the {LABELS[PROFILE_REQUEST_FIELDS[position - 1]['url']]} is empty.",
            )
        if position > 1 and (headers or body) and not url:
            add(parts["url"], f"{LABELS[parts['url']]} is required for its headers and body.")
        if body and clean[parts["method"]] != "POST":
            add(
                parts["body"],
                f"The {LABELS[parts['body']]} is only sent with POST: set the "
                f"{LABELS[parts['method']]} to POST, or empty the body.",
            )
        previous_url = bool(url)


def _check_paths(
    clean: Mapping[str, Any], used: frozenset[str], errors: dict[str, list[str]], add: Add
) -> None:
    """Check the Access Token Path and each profile parameter's path."""
    path = clean["access_token_path"] if "access_token_path" in used else ""
    if path and "access_token_path" not in errors:
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


def url_problem(value: str, label: str) -> str | None:
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
    token_request = " ".join(clean[key] for key in VERIFIER_FIELDS)
    if "CodeVerifier" in find_placeholders(token_request):
        return None
    return (
        "The Identity Provider Login URL sends a PKCE challenge (%CodeChallenge%), but the "
        "token request never sends its verifier: add code_verifier=%CodeVerifier% to the "
        "Token API Post Body (or remove the challenge from the login URL)."
    )


def _substituted(template: str) -> str:
    """Return ``template`` with every placeholder replaced by a harmless dummy value."""
    return render_sample(template)


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
    return any(CLIENT_SECRET_PLACEHOLDERS & set(find_placeholders(data.get(k) or "")) for k in keys)


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
    # Every other request that may carry the secret: the profile requests and the Logoff API.
    requests = [(p["url"], p["headers"], p["body"]) for p in PROFILE_REQUEST_FIELDS.values()]
    requests.append(("logoff_url", "logoff_headers", "logoff_body"))
    for profile_keys in requests:
        url_key = profile_keys[0]
        if _sends_secret(after, *profile_keys):
            if not _sends_secret(before, *profile_keys):
                changes.append(f"the {LABELS[url_key]} or Headers now send the secret")
            else:
                old = _origin(before.get(url_key) or "")
                new = _origin(after.get(url_key) or "")
                if old != new:
                    changes.append(
                        f"the {LABELS[url_key]}, which sends the secret, now goes to {new} "
                        f"instead of {old}"
                    )
    for key in SECRET_BOUND_FIELDS:
        if (before.get(key) or "").strip() != (after.get(key) or "").strip():
            changes.append(f"the {LABELS[key]} changed")
    return changes


def secret_binding_message(changes: list[str]) -> str:
    """Return the Client Secret's error for ``changes`` (from ``secret_binding_changes``)."""
    return (
        f"Type the Client Secret again: {'; '.join(changes)}. The stored secret is only sent "
        "to the host, Client ID and token request it was saved for."
    )


def bound_secret_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], secret: str
) -> list[str]:
    """Return what changed of the settings a stored secret other than the Client Secret is
    sent to (``Field.bound_to``): an address's origin, or a value it goes with."""
    changes: list[str] = []
    for key, field in FIELDS.items():
        if field.bound_to != secret:
            continue
        if field.kind == URL:
            old, new = _origin(before.get(key) or ""), _origin(after.get(key) or "")
            if old != new:
                changes.append(f"the {LABELS[key]} now goes to {new or 'nowhere'} instead of {old}")
        elif (before.get(key) or "").strip() != (after.get(key) or "").strip():
            changes.append(f"the {LABELS[key]} changed")
    return changes


def bound_secret_message(secret: str, changes: list[str]) -> str:
    """Return a secret's error for ``changes`` (from ``bound_secret_changes``)."""
    label = LABELS[secret]
    return (
        f"Type the {label} again: {'; '.join(changes)}. The stored {label} is only sent to "
        "the addresses it was saved for."
    )
