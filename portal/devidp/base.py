"""Pieces shared by the loopback identity providers: members, client, faults, request log."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from flask import Flask, Response, request
from markupsafe import escape
from werkzeug.datastructures import Headers

from portal.devidp.server import LOOPBACK, LiveServer

# --------------------------------------------------------------------------- members


@dataclass
class Member:
    """A person who can sign in at a loopback provider.

    ``None`` fields are left out of the provider's answers (e.g. a member without a last
    name). ``extra`` is merged over the provider's claims / profile object; a ``None`` value
    there removes a claim.
    """

    username: str
    password: str = "password"
    id: int = 0
    sub: str = ""
    email: str | None = None
    email_verified: bool = True
    secondary_emails: list[str] = field(default_factory=list)
    given_name: str | None = None
    family_name: str | None = None
    membership_status: str | None = None
    membership_type: str | None = None
    groups: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


_MEMBER_FIELDS = frozenset(f.name for f in fields(Member))


class Members:
    """Thread-safe registry of members, keyed by username; change it freely between logins."""

    def __init__(self, members: Iterable[Member] = ()) -> None:
        self._lock = threading.RLock()
        self._by_username: dict[str, Member] = {}
        self._next_id = 1042
        self.group_names: dict[str, str] = {}
        for member in members:
            self.add_member(member)

    def add(self, username: str, **attrs: Any) -> Member:
        """Create and register a member; ``attrs`` are :class:`Member` fields."""
        return self.add_member(Member(username=username, **attrs))

    def add_member(self, member: Member) -> Member:
        """Register a member (replacing one with the same username); fills id and sub."""
        with self._lock:
            if not member.id:
                member.id = self._next_id
            self._next_id = max(self._next_id, member.id) + 1
            if not member.sub:
                member.sub = str(uuid.uuid5(uuid.NAMESPACE_URL, f"devidp:{member.username}"))
            self._by_username[member.username] = member
            return member

    def update(self, username: str, **changes: Any) -> Member:
        """Change fields of a member; unknown names go into ``extra`` (claims / profile)."""
        with self._lock:
            member = self[username]
            for name, value in changes.items():
                if name in _MEMBER_FIELDS and name != "username":
                    setattr(member, name, value)
                else:
                    member.extra[name] = value
            return member

    def remove(self, username: str) -> None:
        """Forget a member; later token or profile calls for them fail."""
        with self._lock:
            self._by_username.pop(username, None)

    def clear(self) -> None:
        """Forget every member."""
        with self._lock:
            self._by_username.clear()

    def get(self, username: str) -> Member | None:
        """The member with this username, or ``None``."""
        with self._lock:
            return self._by_username.get(username)

    def check_password(self, username: str, password: str) -> Member | None:
        """The member when the password matches, else ``None`` (constant-time compare)."""
        member = self.get(username)
        if member is None or not secrets.compare_digest(
            member.password.encode(), password.encode()
        ):
            return None
        return member

    def group_name(self, code: str) -> str:
        """Display name of a group code."""
        return self.group_names.get(code) or code.replace("_", " ").title()

    def __getitem__(self, username: str) -> Member:
        member = self.get(username)
        if member is None:
            raise KeyError(username)
        return member

    def __contains__(self, username: object) -> bool:
        with self._lock:
            return username in self._by_username

    def __iter__(self) -> Iterator[Member]:
        with self._lock:
            return iter(list(self._by_username.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_username)


def demo_members() -> list[Member]:
    """Members for the standalone demo: one with groups, one without a last name, one lapsed."""
    return [
        Member(
            username="jdoe",
            password="demo",
            email="jane.doe@example.org",
            secondary_emails=["jane@home.example"],
            given_name="Jane",
            family_name="Doe",
            membership_status="Active",
            membership_type="Professional",
            groups=["WEBINARS", "LIBRARY"],
        ),
        Member(
            username="mo",
            password="demo",
            email="mo@example.org",
            given_name="Mo",
            family_name=None,
            membership_status="Active",
            membership_type="Student",
            groups=[],
        ),
        Member(
            username="bwong",
            password="demo",
            email="b.wong@example.org",
            given_name="Bea",
            family_name="Wong",
            membership_status="Lapsed",
            membership_type="Basic",
            groups=["NEWSLETTER"],
        ),
    ]


# --------------------------------------------------------------------------- client

DEFAULT_CLIENT_SECRET = "portal-secret"
"""Client secret used when a test does not choose one."""


@dataclass
class RegisteredClient:
    """The one client (Portal) registered at a provider."""

    client_id: str = "portal"
    client_secret: str = DEFAULT_CLIENT_SECRET
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    auth_methods: set[str] = field(
        default_factory=lambda: {"client_secret_basic", "client_secret_post"}
    )
    require_pkce: bool = False

    def check_secret(self, client_id: str, client_secret: str) -> bool:
        """True when id and secret are this client's (constant-time compare)."""
        return secrets.compare_digest(
            client_id.encode(), self.client_id.encode()
        ) & secrets.compare_digest(client_secret.encode(), self.client_secret.encode())


def decode_basic_auth(header: str | None) -> tuple[str, str] | None:
    """Decode ``Basic base64(urlenc(id):urlenc(secret))`` (RFC 6749 2.3.1), else ``None``."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if ":" not in raw:
        return None
    client_id, _, secret = raw.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


# --------------------------------------------------------------------------- faults

GENERIC_FAULTS = frozenset(
    {"slow", "status", "html", "garbage", "oversized", "oversized_chunked", "oauth_error", "drop"}
)
"""Faults any HTTP endpoint can take (answered before the endpoint does its work)."""

_DEFAULTS: dict[str, Any] = {
    "slow": 3.0,
    "status": 500,
    "oversized": 2 * 1024 * 1024,
    "oversized_chunked": 2 * 1024 * 1024,
    "oauth_error": "invalid_grant",
    "error": "access_denied",
}


@dataclass
class Fault:
    """One armed fault; ``remaining`` is how many more requests it hits (``None``: all)."""

    endpoint: str
    kind: str
    value: Any
    remaining: int | None = None


class Faults:
    """The fault switch: ``set(endpoint, kind, value)``, ``clear()``.

    ``allowed`` maps endpoint names to the kinds they accept; ``aliases`` maps extra names
    (e.g. ``profile``) to endpoints. Unknown names raise ``ValueError`` so typos fail loudly.
    """

    def __init__(self, allowed: dict[str, frozenset[str]], aliases: dict[str, str]) -> None:
        self.allowed = allowed
        self.aliases = aliases
        self._lock = threading.Lock()
        self._faults: dict[str, dict[str, Fault]] = {}

    def _endpoint(self, endpoint: str) -> str:
        name = self.aliases.get(endpoint, endpoint)
        if name not in self.allowed:
            known = ", ".join(sorted([*self.allowed, *self.aliases]))
            raise ValueError(f"unknown endpoint {endpoint!r} (known: {known})")
        return name

    def set(self, endpoint: str, kind: str, value: Any = None, *, times: int | None = None) -> None:
        """Arm ``kind`` on ``endpoint`` (replacing the same kind); ``times`` limits the hits."""
        name = self._endpoint(endpoint)
        if kind not in self.allowed[name]:
            known = ", ".join(sorted(self.allowed[name]))
            raise ValueError(f"endpoint {name!r} has no fault {kind!r} (known: {known})")
        if value is None:
            value = _DEFAULTS.get(kind)
        with self._lock:
            self._faults.setdefault(name, {})[kind] = Fault(name, kind, value, times)

    def clear(self, endpoint: str | None = None, kind: str | None = None) -> None:
        """Disarm everything, everything on one endpoint, or one kind on one endpoint."""
        with self._lock:
            if endpoint is None:
                self._faults.clear()
                return
            name = self._endpoint(endpoint)
            if kind is None:
                self._faults.pop(name, None)
            else:
                self._faults.get(name, {}).pop(kind, None)

    def active(self, endpoint: str) -> dict[str, Fault]:
        """The faults armed on ``endpoint`` (a copy)."""
        with self._lock:
            return dict(self._faults.get(self._endpoint(endpoint), {}))

    def take(self, endpoint: str, kind: str) -> Fault | None:
        """Consume one hit of ``kind`` on ``endpoint``; ``None`` when it is not armed."""
        name = self._endpoint(endpoint)
        with self._lock:
            fault = self._faults.get(name, {}).get(kind)
            if fault is None:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[name][kind]
            return fault


# --------------------------------------------------------------------------- request log


@dataclass
class RecordedRequest:
    """One request as the provider received it."""

    endpoint: str
    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """(client id, secret) decoded from ``Authorization: Basic``, else ``None``."""
        return decode_basic_auth(self.headers.get("Authorization"))

    @property
    def client_auth_method(self) -> str | None:
        """``client_secret_basic``, ``client_secret_post`` or ``None``."""
        if self.basic_auth is not None:
            return "client_secret_basic"
        if "client_secret" in self.form:
            return "client_secret_post"
        return None


class RequestLog:
    """Requests received, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def append(self, item: RecordedRequest) -> None:
        """Record a request."""
        with self._lock:
            self._items.append(item)

    def all(self, endpoint: str | None = None) -> list[RecordedRequest]:
        """Every recorded request, or those of one endpoint."""
        with self._lock:
            return [r for r in self._items if endpoint is None or r.endpoint == endpoint]

    def last(self, endpoint: str | None = None) -> RecordedRequest:
        """The most recent request (of one endpoint); ``LookupError`` when there is none."""
        items = self.all(endpoint)
        if not items:
            raise LookupError(f"no request recorded for {endpoint or 'any endpoint'}")
        return items[-1]

    def clear(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.all())


# --------------------------------------------------------------------------- HTML


_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}
label{{display:block;margin-top:1rem}}input{{width:100%;padding:.4rem}}
.error{{color:#a00}}.hint{{color:#555;font-size:.9rem}}button{{margin-top:1rem}}</style>
</head>
<body>
{body}
</body>
</html>
"""


def html_page(title: str, body_html: str, status: int = 200) -> Response:
    """A minimal HTML page; ``body_html`` must already be escaped."""
    return Response(
        _PAGE.format(title=escape(title), body=body_html),
        status=status,
        mimetype="text/html",
    )


def login_form(
    *,
    brand: str,
    action: str,
    username: str = "",
    error: str | None = None,
    hint: str | None = None,
    status: int = 200,
) -> Response:
    """The sign-in form: labelled username and password fields, Sign in and Cancel buttons."""
    parts = [f"<h1>{escape(brand)}</h1>", "<p>Sign in to continue.</p>"]
    if error:
        parts.append(f'<p class="error" role="alert">{escape(error)}</p>')
    parts.append(
        f'<form method="post" action="{escape(action)}">'
        '<label for="username">Username</label>'
        f'<input id="username" name="username" autocomplete="username" value="{escape(username)}"'
        " required autofocus>"
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password">'
        '<button type="submit" name="action" value="login">Sign in</button> '
        '<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button>'
        "</form>"
    )
    if hint:
        parts.append(f'<p class="hint">{escape(hint)}</p>')
    return html_page(f"{brand}: sign in", "\n".join(parts), status)


def add_query(url: str, params: dict[str, str | None]) -> str:
    """``url`` with ``params`` (``None`` values skipped) appended to its query string."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


# --------------------------------------------------------------------------- fault responses


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    return Response(
        json.dumps(data), status=status, mimetype="application/json", headers=headers or {}
    )


def _oversized(size: int, chunked: bool) -> Response:
    head = b'{"padding": "'
    tail = b'"}'
    filler = max(0, int(size) - len(head) - len(tail))
    if not chunked:
        return Response(head + b"x" * filler + tail, mimetype="application/json")

    def generate() -> Iterator[bytes]:
        yield head
        left = filler
        while left > 0:
            step = min(left, 65536)
            yield b"x" * step
            left -= step
        yield tail

    return Response(generate(), mimetype="application/json")


RETURN_PARAMS = ("returnUrl", "return", "return_to", "returnTo")


def account_page(brand: str) -> Response:
    """A stand-in "edit your profile" page with a link back to the return URL, if any."""
    target = next((request.args[k] for k in RETURN_PARAMS if request.args.get(k)), None)
    back = f'<p><a href="{escape(target)}">Back to the site</a></p>' if target else ""
    return html_page(
        f"{brand}: your profile",
        f"<h1>Your profile</h1><p>Edit your profile at {escape(brand)}.</p>{back}",
    )


class AuthorizeFailed(Exception):
    """The authorize step answered with a page instead of a redirect back to the client."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"authorize answered {status} instead of a redirect: {text[:300]}")
        self.status = status
        self.text = text


# --------------------------------------------------------------------------- provider


class BaseProvider:
    """State and lifecycle shared by the providers; subclasses build ``self.app``.

    Subclasses set ``FAULT_KINDS`` (endpoint -> kinds), ``FAULT_ALIASES`` and
    ``AUTHORIZE_PATH``, and call :meth:`install_hooks` on their app.
    """

    FAULT_KINDS: dict[str, frozenset[str]] = {}
    FAULT_ALIASES: dict[str, str] = {}
    AUTHORIZE_PATH = "/authorize"

    def __init__(
        self,
        *,
        client_id: str = "portal",
        client_secret: str = DEFAULT_CLIENT_SECRET,
        redirect_uris: Iterable[str] = (),
        members: Iterable[Member] = (),
        code_ttl: float = 60.0,
        token_ttl: int = 3600,
        login_hint: str | None = None,
    ) -> None:
        self.client = RegisteredClient(client_id, client_secret, list(redirect_uris))
        self.members = Members(members)
        self.faults = Faults(self.FAULT_KINDS, self.FAULT_ALIASES)
        self.requests = RequestLog()
        self.logouts: list[dict[str, str]] = []
        self.code_ttl = code_ttl
        self.token_ttl = token_ttl
        self.login_hint = login_hint
        self.server: LiveServer | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.app: Flask = self.create_app()

    def create_app(self) -> Flask:
        """Build the Flask app (subclasses)."""
        raise NotImplementedError

    # ---- lifecycle

    def start(self, port: int = 0, host: str = LOOPBACK) -> BaseProvider:
        """Serve on a loopback port (0 = a free one) in a background thread."""
        if self.server is None:
            self.server = LiveServer(self.app, host=host, port=port)
        self._wake.clear()
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving (connections are refused); ``start()`` again reuses the port."""
        self._wake.set()
        if self.server is not None:
            self.server.stop()

    def restart(self) -> BaseProvider:
        """Stop and serve again on the same port."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        """True while the provider is being served."""
        return self.server is not None and self.server.running

    @property
    def url(self) -> str:
        """Base URL of the running provider, e.g. ``http://127.0.0.1:54321``."""
        if self.server is None:
            raise RuntimeError("provider was never started; call start() or use `with`")
        return self.server.url

    def __enter__(self) -> BaseProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Clear faults, recorded requests, logouts, codes and tokens (members stay)."""
        self.faults.clear()
        self.requests.clear()
        self.logouts.clear()
        with self._lock:
            self.clear_grants()

    def clear_grants(self) -> None:
        """Forget issued codes and tokens (subclasses; called with the lock held)."""

    # ---- authorize without a browser

    def authorize_redirect(
        self,
        authorize_url: str,
        username: str,
        password: str | None = None,
        *,
        cancel: bool = False,
    ) -> str:
        """Submit the sign-in form for ``username`` and return the redirect back to the client.

        Runs the same code path as a browser's POST (faults, request log included), in
        process, so the provider need not be running. ``password`` defaults to the member's.
        Raises :class:`AuthorizeFailed` when the provider answers with a page (bad client,
        unregistered redirect URI, wrong password).
        """
        parts = urlsplit(authorize_url)
        if password is None:
            member = self.members.get(username)
            password = member.password if member else ""
        data = {"username": username, "password": password}
        data["action"] = "cancel" if cancel else "login"
        path = parts.path or self.AUTHORIZE_PATH
        target = f"{path}?{parts.query}" if parts.query else path
        with self.app.test_client() as client:
            resp = client.post(target, data=data, base_url=self._base_url_for_test())
        if resp.status_code not in (301, 302, 303, 307) or "Location" not in resp.headers:
            raise AuthorizeFailed(resp.status_code, resp.get_data(as_text=True))
        return resp.headers["Location"]

    def _base_url_for_test(self) -> str:
        return (
            self.server.url if self.server is not None and self.server.port else "http://localhost"
        )

    # ---- helpers for subclasses

    def new_secret(self, prefix: str) -> str:
        """A random opaque value (codes, tokens)."""
        return f"{prefix}_{secrets.token_urlsafe(24)}"

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early when the provider stops."""
        self._wake.wait(float(seconds))

    def install_hooks(self, app: Flask, endpoint_names: dict[str, str]) -> None:
        """Record every request and answer generic faults before the view runs.

        ``endpoint_names`` maps Flask endpoint names to fault endpoint names.
        """

        @app.before_request
        def _record_and_fault() -> Response | None:
            name = endpoint_names.get(request.endpoint or "", request.endpoint or "?")
            self.requests.append(
                RecordedRequest(
                    endpoint=name,
                    method=request.method,
                    path=request.path,
                    query=dict(request.args.items()),
                    headers=Headers(list(request.headers.items())),
                    body=request.get_data(cache=True),
                )
            )
            if name not in self.FAULT_KINDS:
                return None
            return self.generic_fault(name)

    def generic_fault(self, endpoint: str) -> Response | None:
        """Apply the generic faults armed on ``endpoint``; a response short-circuits the view."""
        armed = self.faults.active(endpoint)
        if not armed:
            return None
        if "slow" in armed and (fault := self.faults.take(endpoint, "slow")):
            self.sleep(fault.value)
        for kind in (
            "drop",
            "status",
            "html",
            "garbage",
            "oversized",
            "oversized_chunked",
            "oauth_error",
        ):
            if kind in armed and (fault := self.faults.take(endpoint, kind)):
                return _FAULT_RESPONSES[kind](fault.value)
        return None


def _drop(_: Any) -> Response:
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return Response(b"", status=500)


def _status(code: Any) -> Response:
    code = int(code)
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if code == 401 else {}
    return Response(
        f"Simulated HTTP {code} from the loopback provider.\n",
        status=code,
        mimetype="text/plain",
        headers=headers,
    )


def _html(_: Any) -> Response:
    return html_page(
        "Service unavailable",
        "<h1>We'll be right back</h1><p>The member center is undergoing maintenance.</p>",
        200,
    )


def _garbage(_: Any) -> Response:
    body = b'{"access_token": "abc", "token_type": <<not json'
    return Response(body, mimetype="application/json")


def _oauth_error(error: Any) -> Response:
    return json_response(
        {"error": str(error), "error_description": "Simulated error from the loopback provider."},
        400,
    )


_FAULT_RESPONSES: dict[str, Callable[[Any], Response]] = {
    "drop": _drop,
    "status": _status,
    "html": _html,
    "garbage": _garbage,
    "oversized": lambda size: _oversized(size, chunked=False),
    "oversized_chunked": lambda size: _oversized(size, chunked=True),
    "oauth_error": _oauth_error,
}


def now() -> int:
    """Current Unix time in seconds."""
    return int(time.time())
