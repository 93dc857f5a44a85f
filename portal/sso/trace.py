"""The redacting trace of one sign-in, and the secrets neither it nor an error may show."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from portal.sso.errors import REDACTED, SSOError

#: Placeholders whose values are secret: redacted in traces and error messages.
SECRET_PLACEHOLDERS: tuple[str, ...] = (
    "ClientSecret",
    "Code",
    "CodeVerifier",
    "Token",
    "IDToken",
    "RefreshToken",
    "BasicAuth",
)
#: Keys of the token response whose values are always redacted in a trace.
TOKEN_KEYS: frozenset[str] = frozenset({"access_token", "refresh_token", "id_token"})


def secret_variants(value: str) -> set[str]:
    """Return a secret and the forms it takes once encoded for a context."""
    if not value:
        return set()
    b64 = base64.b64encode(value.encode("utf-8")).decode("ascii")
    variants = {value, b64}
    for v in (value, b64):
        variants |= {quote(v, safe=""), quote_plus(v), json.dumps(v, ensure_ascii=False)[1:-1]}
    return {v for v in variants if v}


def _last_key(path: str) -> str | None:
    """Return the last member name of a simple JMESPath (`a.b."c-d"` gives `c-d`)."""
    names = re.findall(r'"((?:[^"\\]|\\.)*)"|([A-Za-z_][A-Za-z0-9_]*)', path or "")
    if not names:
        return None
    quoted, bare = names[-1]
    return quoted or bare


def hidden_token_keys(access_token_path: str) -> frozenset[str]:
    """Return the token response keys a trace hides whole: TOKEN_KEYS and the access token's."""
    last = _last_key(access_token_path)
    return TOKEN_KEYS | ({last} if last else set())


def looks_secret_path(path: str) -> bool:
    """Tell whether a JMESPath picks a value at a key named like a token, secret or session
    (a session id read from one answer opens the next: a credential too)."""
    key = _last_key(path)
    return _looks_secret(key) or "session" in (key or "").lower()


def _looks_secret(key: Any) -> bool:
    """Tell whether a document key probably holds a token or secret (`token`, `x_secret`...)."""
    if not isinstance(key, str):
        return False
    name = key.lower()
    return name not in ("token_type", "tokentype") and ("token" in name or "secret" in name)


@dataclass
class TraceEntry:
    """One outbound request as the admin test screen shows it (secrets redacted)."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: str | None
    status: int | None
    elapsed_ms: float
    content_type: str | None = None
    error: str | None = None


@dataclass
class Trace:
    """A recorder of the requests and documents of one sign-in, with secrets redacted."""

    entries: list[TraceEntry] = field(default_factory=list)
    token_response: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    id_claims: dict[str, Any] | None = None
    error_code: str | None = None
    error_detail: str | None = None

    def __post_init__(self) -> None:
        # Not a dataclass field, so that asdict() or a template never sees the secrets.
        self._secrets: set[str] = set()

    def add_secrets(self, values: Iterable[str | None]) -> None:
        """Register secret values (and their encoded forms) to redact."""
        for value in values:
            if isinstance(value, str):
                self._secrets |= secret_variants(value)

    def redact_text(self, text: str) -> str:
        """Replace every registered secret in a text with a marker."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def redact_doc(self, doc: Any, keys: Iterable[str] = ()) -> Any:
        """Return a copy of a JSON document with secrets redacted by key and by value.

        Values under ``keys`` or keys named like a token or secret are replaced whole; every
        registered secret is replaced wherever else it appears: inside any string value,
        inside a key, or as a number, so a provider that echoes the Client Secret or a token
        under an innocuous key shows neither.
        """
        keys = frozenset(keys)
        if isinstance(doc, dict):
            return {
                self.redact_doc(k): (
                    REDACTED if k in keys or _looks_secret(k) else self.redact_doc(v, keys)
                )
                for k, v in doc.items()
            }
        if isinstance(doc, list):
            return [self.redact_doc(v, keys) for v in doc]
        if isinstance(doc, str):
            return self.redact_text(doc)
        if isinstance(doc, int | float) and not isinstance(doc, bool) and str(doc) in self._secrets:
            return REDACTED
        return doc

    def record_request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        *,
        status: int | None,
        elapsed_ms: float,
        content_type: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record one outbound request and its outcome, redacted."""
        self.entries.append(
            TraceEntry(
                method=method,
                url=self.redact_text(url),
                headers=[(name, self.redact_text(value)) for name, value in headers],
                body=None if body is None else self.redact_text(body.decode("utf-8", "replace")),
                status=status,
                elapsed_ms=elapsed_ms,
                content_type=content_type,
                error=error,
            )
        )


class SignInSecrets:
    """The secret values one sign-in has met so far: its error and its trace must not show them."""

    def __init__(self, trace: Trace | None) -> None:
        self.values: list[str] = []
        self.trace = trace

    def keep(self, *values: str | None) -> None:
        """Register secret values; empty and non-text values are skipped."""
        clean = [v for v in values if isinstance(v, str) and v]
        self.values.extend(clean)
        if self.trace is not None:
            self.trace.add_secrets(clean)

    def keep_placeholders(self, values: Mapping[str, str]) -> None:
        """Register the values of the secret placeholders among template values."""
        self.keep(*(values[name] for name in SECRET_PLACEHOLDERS if name in values))

    def variants(self) -> set[str]:
        """Return every registered secret in each of its encoded forms."""
        return set().union(*(secret_variants(v) for v in self.values))

    @contextmanager
    def failures_reported(self, logger: logging.Logger, slug: str, what: str) -> Iterator[None]:
        """Report an SSOError raised inside: redacted, noted on the trace, logged, re-raised.

        The log line reads ``SSO <slug>: <what> failed: <error>``.
        """
        try:
            yield
        except SSOError as exc:
            exc.redact(self.variants())
            if self.trace is not None:
                self.trace.error_code, self.trace.error_detail = exc.code, exc.log_detail
            logger.warning("SSO %s: %s failed: %s", slug, what, exc)
            raise
