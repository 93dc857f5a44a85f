"""OpenID Connect discovery: fill a configuration from an issuer's discovery document.

Flask-free, like the rest of the engine. ``discover_issuer`` fetches the provider's metadata
through the engine's HTTP client, checks that the document speaks for the issuer the manager
typed (OpenID Connect Discovery 1.0 section 4.3, RFC 8414 section 3.3), and maps its endpoints
onto the form's templates. Every failure is a typed ``SSOError`` whose ``user_message`` is
written for the community manager who pressed *Import from issuer*.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from portal.sso.errors import (
    IssuerMismatch,
    ProviderBadResponse,
    ProviderHTTPError,
    SSOError,
)
from portal.sso.fields import FIELDS
from portal.sso.http import HttpClient
from portal.sso.responses import cache_ttl, parse_json_or_form
from portal.sso.trace import Trace

log = logging.getLogger(__name__)

WELL_KNOWN = "/.well-known/openid-configuration"

#: Scopes asked for by default, kept only when the provider lists them (``openid`` always).
DEFAULT_SCOPES = ("openid", "email", "profile")

CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class DiscoveryInvalid(ProviderBadResponse):
    """The discovery document is JSON but not usable (missing or unsafe endpoints)."""

    code = "discovery_invalid"
    default_user_message = "The provider's OpenID Connect discovery document is not usable."


@dataclass(frozen=True)
class DiscoveredConfig:
    """What a discovery document tells the authentication-system form.

    Field names match the form's (and ``AuthSystem``'s) so ``form_values()`` can fill it.
    """

    issuer: str
    login_url: str
    token_url: str
    token_method: str
    token_headers: str
    token_body: str
    profile_url: str
    profile_headers: str
    jwks_url: str
    scope: str
    logout_url: str
    #: ``client_secret_basic`` or ``client_secret_post``: how the token request authenticates.
    token_auth_method: str
    #: Whether the login URL sends a PKCE S256 challenge (and the token body its verifier).
    pkce: bool
    #: The URL the document was read from.
    discovery_url: str

    def form_values(self) -> dict[str, str]:
        """Return the values to put into the form, keyed by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in FIELDS}


def discovery_url_for(issuer_url: str) -> str:
    """Return the discovery URL of an issuer (a terminating ``/`` is removed first)."""
    issuer = issuer_url.strip()
    if issuer.endswith("/"):
        issuer = issuer[:-1]
    return issuer + WELL_KNOWN


def issuer_matches(given: str, document_issuer: str) -> bool:
    """Return whether the document's ``issuer`` is the issuer the manager gave.

    The comparison is an exact string match (no case folding, no default-port or
    percent-encoding normalisation). The only leniency is a single terminating ``/``, which
    OpenID Connect Discovery removes from the issuer before appending the well-known path:
    ``https://tenant.auth0.com`` finds the document whose issuer is ``https://tenant.auth0.com/``.
    """
    given = given.strip()
    if given == document_issuer:
        return True
    return given.removesuffix("/") == document_issuer.removesuffix("/") and (
        given.endswith("/") != document_issuer.endswith("/")
    )


def _is_secure_url(url: str) -> bool:
    """Return whether ``url`` is absolute https, or http on a loopback host (development)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.netloc or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


def _check_issuer_url(issuer_url: str) -> None:
    if not _is_secure_url(issuer_url):
        raise DiscoveryInvalid(
            "issuer URL is not an absolute https URL",
            user_message=(
                "The issuer must be an absolute https:// URL, such as "
                "https://login.example.com or https://example.okta.com/oauth2/default."
            ),
        )
    parts = urlsplit(issuer_url)
    if parts.query or parts.fragment:
        raise DiscoveryInvalid(
            "issuer URL has a query or fragment",
            user_message="The issuer URL must not contain a query (?...) or a fragment (#...).",
        )


def _endpoint(doc: Mapping[str, Any], name: str, *, required: bool) -> str:
    value = doc.get(name)
    if value is None or value == "":
        if required:
            raise DiscoveryInvalid(
                f"discovery document has no {name}",
                user_message=f"The provider's discovery document does not give a {name}.",
            )
        return ""
    if not isinstance(value, str) or not _is_secure_url(value):
        raise DiscoveryInvalid(
            f"{name} is not an absolute https URL",
            user_message=(
                f"The provider's discovery document gives a {name} that is not an https URL."
            ),
        )
    return value


def _string_list(doc: Mapping[str, Any], name: str) -> list[str] | None:
    value = doc.get(name)
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return None


def _with_query(url: str, query: str) -> str:
    if not query:
        return url
    joiner = "&" if "?" in url else "?"
    if url.endswith(("?", "&")):
        joiner = ""
    return url + joiner + query


def _choose_auth_method(supported: Sequence[str] | None) -> str:
    # Absent, the default is client_secret_basic (OpenID Connect Discovery 1.0 section 3).
    if supported is None or CLIENT_SECRET_BASIC in supported:
        return CLIENT_SECRET_BASIC
    if CLIENT_SECRET_POST in supported:
        return CLIENT_SECRET_POST
    raise DiscoveryInvalid(
        f"token endpoint auth methods {list(supported)!r} include no client secret method",
        user_message=(
            "The provider does not accept a client secret at its token endpoint "
            f"(it supports: {', '.join(supported) or 'nothing listed'}). "
            "Portal authenticates with client_secret_basic or client_secret_post."
        ),
    )


def _scope(supported: Sequence[str] | None) -> str:
    if supported is None:
        return " ".join(DEFAULT_SCOPES)
    return " ".join(s for s in DEFAULT_SCOPES if s == "openid" or s in supported)


def _fetch(url: str, http: HttpClient, trace: Trace | None) -> dict[str, Any]:
    try:
        resp = http.request(
            "GET", url, headers=[("Accept", "application/json")], trace=trace, step="discovery"
        )
        return parse_json_or_form(resp, allow_form=False)
    except ProviderHTTPError as exc:
        if exc.status == 404:
            exc.user_message = (
                f"There is no OpenID Connect discovery document at {url} (HTTP 404). "
                "Check the issuer URL; the provider may not support discovery."
            )
        else:
            exc.user_message = f"The provider answered HTTP {exc.status} for {url}."
        raise
    except ProviderBadResponse as exc:
        exc.user_message = (
            f"{url} did not return an OpenID Connect discovery document (JSON): {exc.log_detail}."
        )
        raise
    except SSOError as exc:
        exc.user_message = f"Could not read {url}: {exc.user_message}"
        raise


def discover_issuer(
    issuer_url: str, http: HttpClient, *, trace: Trace | None = None
) -> DiscoveredConfig:
    """Fetch an issuer's OpenID Connect discovery document and map it onto the form.

    Raises ``IssuerMismatch`` when the document's ``issuer`` is not the URL given,
    ``ProviderHTTPError`` / ``ProviderBadResponse`` (HTML, invalid JSON) / ``DiscoveryInvalid``
    (missing or non-https endpoints, no client-secret authentication, no ``code`` response
    type) and the HTTP client's ``ProviderUnreachable`` / ``ProviderTimeout``.
    """
    issuer_url = (issuer_url or "").strip()
    _check_issuer_url(issuer_url)
    url = discovery_url_for(issuer_url)
    doc = _fetch(url, http, trace)
    issuer = _document_issuer(doc, issuer_url, url)
    _check_response_types(doc)

    authorization_endpoint = _endpoint(doc, "authorization_endpoint", required=True)
    token_endpoint = _endpoint(doc, "token_endpoint", required=True)
    userinfo_endpoint = _endpoint(doc, "userinfo_endpoint", required=False)
    jwks_uri = _endpoint(doc, "jwks_uri", required=False)
    end_session_endpoint = _endpoint(doc, "end_session_endpoint", required=False)

    pkce = "S256" in (_string_list(doc, "code_challenge_methods_supported") or [])
    auth_method = _choose_auth_method(_string_list(doc, "token_endpoint_auth_methods_supported"))
    token_headers, token_body = _token_request(auth_method, pkce)
    return DiscoveredConfig(
        issuer=issuer,
        login_url=_login_url(authorization_endpoint, pkce),
        token_url=token_endpoint,
        token_method="POST",
        token_headers=token_headers,
        token_body=token_body,
        profile_url=userinfo_endpoint,
        profile_headers="Authorization: Bearer %Token%" if userinfo_endpoint else "",
        jwks_url=jwks_uri,
        scope=_scope(_string_list(doc, "scopes_supported")),
        logout_url=_logout_url(end_session_endpoint),
        token_auth_method=auth_method,
        pkce=pkce,
        discovery_url=url,
    )


def _document_issuer(doc: Mapping[str, Any], issuer_url: str, url: str) -> str:
    """Return the document's ``issuer``; raise when it is missing or not ``issuer_url``."""
    issuer = doc.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise DiscoveryInvalid(
            "discovery document has no issuer",
            user_message="The provider's discovery document does not name its issuer.",
        )
    if not issuer_matches(issuer_url, issuer):
        raise IssuerMismatch(
            f"discovery at {url} names issuer {issuer!r}, not {issuer_url!r}",
            user_message=(
                f"The discovery document at {url} belongs to issuer {issuer}, "
                f"not to {issuer_url}. Enter the provider's exact issuer URL."
            ),
        )
    return issuer


def _check_response_types(doc: Mapping[str, Any]) -> None:
    """Raise unless the provider offers the authorization-code flow (when it lists its types)."""
    response_types = _string_list(doc, "response_types_supported")
    if response_types is not None and "code" not in response_types:
        raise DiscoveryInvalid(
            f"response_types_supported {response_types!r} lacks 'code'",
            user_message=(
                "The provider does not offer the authorization-code flow "
                '(response type "code"), which Portal uses.'
            ),
        )


def _login_url(authorization_endpoint: str, pkce: bool) -> str:
    """Return the login URL template, with a PKCE challenge when the provider supports S256."""
    query = (
        "response_type=code&client_id=%ClientID%&redirect_uri=%RedirectURL%"
        "&scope=%Scope%&state=%State%&nonce=%Nonce%"
    )
    if pkce:
        query += "&code_challenge=%CodeChallenge%&code_challenge_method=S256"
    return _with_query(authorization_endpoint, query)


def _token_request(auth_method: str, pkce: bool) -> tuple[str, str]:
    """Return the token request's headers and body for ``auth_method``, with PKCE's verifier."""
    body = "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
    if auth_method == CLIENT_SECRET_POST:
        body += "&client_id=%ClientID%&client_secret=%ClientSecret%"
        headers = ""
    else:
        headers = "Authorization: Basic %BasicAuth%"
    if pkce:
        body += "&code_verifier=%CodeVerifier%"
    return headers, body


def _logout_url(end_session_endpoint: str) -> str:
    """Return the Alternate Logout URL template for an end-session endpoint, or ""."""
    if not end_session_endpoint:
        return ""
    return _with_query(
        end_session_endpoint,
        "client_id=%ClientID%&id_token_hint=%IDToken%&post_logout_redirect_uri=%ReturnToURL%",
    )


# -- provider metadata at sign-in ------------------------------------------------------------

#: How long a failed discovery fetch is remembered: no extra request (or latency) per sign-in.
FAILURE_TTL = 60.0


@dataclass
class _Metadata:
    doc: dict[str, Any] | None
    expires_at: float


class DiscoveryCache:
    """The discovery documents of this process, keyed by issuer, kept for their TTL.

    A document is kept for its ``Cache-Control: max-age`` (bounded, 1 h without one); a
    failure (unreachable, not JSON, another issuer's document) is remembered as "no
    document" for ``failure_ttl`` seconds.
    """

    def __init__(
        self, *, failure_ttl: float = FAILURE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: dict[str, _Metadata] = {}
        self._lock = threading.Lock()
        self.failure_ttl = failure_ttl
        self.clock = clock

    def get(self, issuer: str, http: HttpClient) -> dict[str, Any] | None:
        """Return the issuer's discovery document, or ``None`` when it cannot be had."""
        with self._lock:
            entry = self._entries.get(issuer)
            if entry is not None and entry.expires_at > self.clock():
                return entry.doc
        url = discovery_url_for(issuer)
        doc: dict[str, Any] | None = None
        ttl = self.failure_ttl
        try:
            resp = http.request(
                "GET", url, headers=[("Accept", "application/json")], step="discovery"
            )
            fetched = parse_json_or_form(resp, allow_form=False)
        except SSOError as exc:
            log.info("Discovery document of %s unavailable: %s", issuer, exc.code)
        else:
            found = fetched.get("issuer")
            if isinstance(found, str) and issuer_matches(issuer, found):
                doc, ttl = fetched, cache_ttl(resp.headers.get("cache-control"))
            else:
                log.info("Discovery document at %s names another issuer: ignored", url)
        with self._lock:
            self._entries[issuer] = _Metadata(doc, self.clock() + ttl)
        return doc

    def clear(self) -> None:
        """Forget every cached document."""
        with self._lock:
            self._entries.clear()


_process_cache = DiscoveryCache()


def get_discovery_cache() -> DiscoveryCache:
    """Return this process's discovery cache."""
    return _process_cache


def requires_iss_parameter(issuer: str, http: HttpClient, cache: DiscoveryCache) -> bool:
    """Tell whether the issuer advertises that its authorization responses carry ``iss``.

    RFC 9207 section 3: a client that knows the provider sends ``iss`` must refuse a response
    without it. When the discovery document cannot be fetched, nothing is required.
    """
    if not issuer:
        return False
    doc = cache.get(issuer, http)
    return bool(doc) and doc.get("authorization_response_iss_parameter_supported") is True
