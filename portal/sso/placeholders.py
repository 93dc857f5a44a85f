"""Template placeholders (`%Name%`, `%Name:modifier%`) and their context-aware encoding."""

from __future__ import annotations

import base64
import enum
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from jmespath.exceptions import JMESPathError

from portal.sso.errors import TemplateError
from portal.sso.fields import DATA_SOURCE_FIELDS, LABELS, TEMPLATE_FIELDS
from portal.sso.paths import path_limit_problem, search_path, validate_path

PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "ClientID",
        "ClientSecret",
        "BasicAuth",
        "RedirectURL",
        "State",
        "Nonce",
        "Scope",
        "CodeChallenge",
        "CodeVerifier",
        "Code",
        "Token",
        "IDToken",
        "RefreshToken",
        "ReturnToURL",
        "LoginHint",
    }
)

#: Placeholders that carry the client secret.
CLIENT_SECRET_PLACEHOLDERS: frozenset[str] = frozenset({"ClientSecret", "BasicAuth"})

MODIFIERS: frozenset[str] = frozenset({"base64"})


class Context(enum.Enum):
    """Where a rendered value lands, which decides how it is encoded."""

    URL = "url"
    FORM = "form"
    JSON = "json"
    HEADER = "header"


# A value read from a document: ``%TokenResponse:<JMESPath>%`` or ``%Response2:<JMESPath>%``
# (the path runs to the next ``%``), tried first. Else a CamelCase name: starts upper case and
# holds at least one lower-case letter, so that percent-escapes such as %C3%A9 never look like
# placeholders.
_PLACEHOLDER_RE = re.compile(
    r"%(?:(?P<source>TokenResponse|Response[0-9]+):(?P<path>[^%\r\n]+)"
    r"|(?=[A-Z][A-Za-z0-9]*[a-z])(?P<name>[A-Z][A-Za-z0-9]*)(?::(?P<modifier>[A-Za-z0-9_]+))?)%"
)

# RFC 7230 token characters.
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN_IN_HEADER = ("\r", "\n", "\0")


def find_placeholders(template: str) -> list[str]:
    """Return the placeholder names used in a template, in order of appearance.

    A document value (``%Response1:Id%``) is named by its source (``Response1``).
    """
    return [m.group("source") or m.group("name") for m in _PLACEHOLDER_RE.finditer(template or "")]


def find_document_values(template: str) -> list[tuple[str, str]]:
    """Return the ``(source, path)`` of each ``%Source:<JMESPath>%`` in a template."""
    return [
        (m.group("source"), m.group("path"))
        for m in _PLACEHOLDER_RE.finditer(template or "")
        if m.group("source")
    ]


def _document_value_problem(source: str, path: str, field: str, label: str) -> str | None:
    """Return why ``%source:path%`` cannot be used in ``field``, or None."""
    offered = DATA_SOURCE_FIELDS.get(field, frozenset())
    text = f"%{source}:{path}%"
    if source not in offered:
        if not offered:
            return f"{text} is not available in the {label}: only profile requests read responses."
        position = len(offered)  # TokenResponse and Response1..N-1
        earlier = {
            1: "the token response (%TokenResponse:...%)",
            2: "the token response and the response of request 1",
        }.get(position, f"the token response and the responses of requests 1 to {position - 1}")
        return (
            f"{text} in the {label} reads a response that does not exist yet: profile "
            f"request {position} can only use {earlier}."
        )
    problem = validate_path(path)
    if problem:
        return f"{text} in the {label}: not a valid path: {problem}"
    limit = path_limit_problem(path)
    if limit:
        return f"The path of {text} in the {label} {limit}"
    return None


def validate_template(template: str, field: str) -> list[str]:
    """Return one human message per placeholder problem in a template field."""
    if not template:
        return []
    offered = TEMPLATE_FIELDS.get(field, frozenset())
    label = LABELS.get(field, field)
    problems: list[str] = []
    for match in _PLACEHOLDER_RE.finditer(template):
        if match.group("source"):
            message = _document_value_problem(
                match.group("source"), match.group("path"), field, label
            )
            if message and message not in problems:
                problems.append(message)
            continue
        name, modifier = match.group("name"), match.group("modifier")
        if name not in PLACEHOLDERS:
            message = f"Unknown placeholder %{name}% in the {label}."
        elif name not in offered:
            message = f"%{name}% is not available in the {label}."
        elif modifier is not None and modifier not in MODIFIERS:
            message = f'Unknown modifier "{modifier}" in {match.group(0)} in the {label}.'
        else:
            continue
        if message not in problems:
            problems.append(message)
    return problems


def _json_escape(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _header_value(value: str) -> str:
    if any(ch in value for ch in _FORBIDDEN_IN_HEADER):
        # The value itself may be a secret: name the problem, never the value.
        raise TemplateError("a placeholder value holds a line break or NUL; refused in a header")
    return value


_ENCODERS: dict[Context, Callable[[str], str]] = {
    Context.URL: lambda v: quote(v, safe=""),
    Context.FORM: quote_plus,
    Context.JSON: _json_escape,
    Context.HEADER: _header_value,
}


def encode_value(value: str, context: Context, modifier: str | None = None) -> str:
    """Encode one placeholder value for a context, after applying its modifier."""
    if modifier == "base64":
        value = base64.b64encode(value.encode("utf-8")).decode("ascii")
    elif modifier is not None:
        raise TemplateError(f'unknown placeholder modifier "{modifier}"')
    return _ENCODERS[context](value)


def document_value(source: str, path: str, documents: Mapping[str, Any] | None) -> str:
    """Return the scalar at ``path`` in the document ``source`` names, as text.

    A source that is not (yet) there, a path that finds nothing or finds a list or an
    object is a ``TemplateError``: the request cannot be built as the manager meant it. The
    message names the placeholder, never the value.
    """
    text = f"%{source}:{path}%"
    if documents is None or source not in documents:
        raise TemplateError(f"{text} reads a response this request does not have")
    try:
        value = search_path(path, documents[source])
    except JMESPathError:
        raise TemplateError(f"{text}: the path could not run on the response") from None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value:
        return value
    kind = "nothing" if value in (None, "") else "a list or an object, not one value"
    raise TemplateError(f"{text} found {kind} in the response")


def render(
    template: str,
    context: Context,
    values: Mapping[str, str],
    documents: Mapping[str, Any] | None = None,
) -> str:
    """Substitute placeholders, encoding each value for the context.

    ``documents`` holds what ``%Source:<JMESPath>%`` reads (``TokenResponse``, ``Response1``
    ...). Substitution is one pass: a value that itself looks like a placeholder is text.
    """

    def substitute(match: re.Match[str]) -> str:
        if match.group("source"):
            value = document_value(match.group("source"), match.group("path"), documents)
            return encode_value(value, context)
        value = values.get(match.group("name"))
        return encode_value("" if value is None else str(value), context, match.group("modifier"))

    return _PLACEHOLDER_RE.sub(substitute, template or "")


def render_sample(template: str) -> str:
    """Return ``template`` with every placeholder, document values too, replaced by ``x``.

    For checking the shape of a template (an absolute URL, its host) before any sign-in.
    """
    return _PLACEHOLDER_RE.sub("x", template or "")


def basic_auth(client_id: str, client_secret: str) -> str:
    """Return the HTTP Basic credentials for a client (RFC 6749 section 2.3.1)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def _split_header_line(line: str) -> tuple[str, str] | None:
    name, sep, value = line.partition(":")
    if not sep:
        return None
    return name.strip(), value.strip()


def validate_header_lines(text: str) -> list[str]:
    """Return one human message per malformed line of a `Name: value` list."""
    problems: list[str] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = _split_header_line(line)
        if parts is None:
            problems.append(f'Line {number} is not of the form "Name: value".')
        elif not _HEADER_NAME_RE.match(parts[0]):
            problems.append(f'Line {number}: "{parts[0]}" is not a valid header name.')
    return problems


def parse_header_lines(text: str) -> list[tuple[str, str]]:
    """Parse one `Name: value` per line, ignoring blank lines."""
    problems = validate_header_lines(text)
    if problems:
        raise TemplateError(" ".join(problems))
    headers: list[tuple[str, str]] = []
    for line in (text or "").splitlines():
        parts = _split_header_line(line) if line.strip() else None
        if parts is not None:
            headers.append(parts)
    return headers


def render_headers(
    text: str, values: Mapping[str, str], documents: Mapping[str, Any] | None = None
) -> list[tuple[str, str]]:
    """Parse a header list and render each value in the HEADER context."""
    return [
        (name, render(value, Context.HEADER, values, documents))
        for name, value in parse_header_lines(text)
    ]


def body_context(headers: list[tuple[str, str]]) -> Context:
    """Return JSON when the Content-Type header names JSON, else FORM."""
    for name, value in headers:
        if name.lower() == "content-type":
            media_type = value.split(";", 1)[0].strip().lower()
            if media_type == "application/json" or media_type.endswith("+json"):
                return Context.JSON
            return Context.FORM
    return Context.FORM
