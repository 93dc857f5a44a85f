"""Client-side helpers for the loopback providers' tests (what Portal would send)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

import httpx

from portal.devidp import AMSProvider, OIDCProvider, s256

CLIENT_ID = "portal client"
# Every character that tends to get mangled on the way: + / = & " : % space and non-ASCII.
CLIENT_SECRET = 'a+b/c=&d"e:f%20 é'
REDIRECT_URI = "http://127.0.0.1:9/sso/test/callback?x=1"


def basic_auth(client_id: str, secret: str) -> str:
    """RFC 6749 2.3.1 Basic credentials."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def query_of(url: str) -> dict[str, str]:
    """Single-valued query parameters of ``url``."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


@dataclass
class Login:
    """What a client keeps between the authorize redirect and the token call."""

    url: str
    state: str
    nonce: str
    verifier: str


def oidc_login(
    idp: OIDCProvider, *, pkce: bool = True, scope: str = "openid email profile", **extra: str
) -> Login:
    """Build an authorize URL for ``idp`` the way Portal would."""
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": state,
        "nonce": nonce,
    }
    if pkce:
        params |= {"code_challenge": s256(verifier), "code_challenge_method": "S256"}
    params |= extra
    return Login(f"{idp.authorize_url}?{urlencode(params)}", state, nonce, verifier)


def ams_login(idp: AMSProvider) -> Login:
    """Build an AMS authorize URL."""
    state = secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "state": state,
    }
    return Login(f"{idp.authorize_url}?{urlencode(params)}", state, "", "")


def oidc_token_request(
    http: httpx.Client,
    idp: OIDCProvider,
    code: str,
    *,
    verifier: str | None,
    method: str = "client_secret_basic",
    secret: str = CLIENT_SECRET,
    timeout: float | None = None,
) -> httpx.Response:
    """POST the authorization-code grant with the chosen client authentication."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    headers = {}
    if method == "client_secret_basic":
        headers["Authorization"] = basic_auth(CLIENT_ID, secret)
    else:
        data |= {"client_id": CLIENT_ID, "client_secret": secret}
    kwargs = {"timeout": timeout} if timeout is not None else {}
    return http.post(idp.token_url, data=data, headers=headers, **kwargs)


def ams_token_request(
    http: httpx.Client,
    idp: AMSProvider,
    code: str,
    *,
    secret: str = CLIENT_SECRET,
    timeout: float | None = None,
) -> httpx.Response:
    """POST the AMS JSON token request."""
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": secret,
        "redirect_uri": REDIRECT_URI,
    }
    kwargs = {"timeout": timeout} if timeout is not None else {}
    return http.post(idp.token_url, json=body, **kwargs)


def oidc_code(idp: OIDCProvider, username: str = "jdoe", **kw: str) -> tuple[Login, str]:
    """Complete authorize for ``username``; returns the login and the code."""
    login = oidc_login(idp, **kw)
    back = idp.authorize_redirect(login.url, username)
    return login, query_of(back)["code"]


def ams_code(idp: AMSProvider, username: str = "jdoe") -> tuple[Login, str]:
    """Complete AMS authorize for ``username``; returns the login and the code."""
    login = ams_login(idp)
    return login, query_of(idp.authorize_redirect(login.url, username))["code"]
