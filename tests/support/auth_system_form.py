"""The Add a New Authentication System form as the tests fill it, and its distinctive secret."""

from __future__ import annotations

import html
from typing import Any

from portal.sso.fields import DEFAULT_REFRESH_TOKEN_BODY, DEFAULT_TOKEN_BODY

#: A client secret distinctive enough to search pages, logs and columns for.
SECRET = 'Plain-Secret-7Qx9+/=&"end'


def valid_form_data() -> dict[str, Any]:
    """Return the fields of a valid Add a New Authentication System submission."""
    return {
        "type": "oauth2",
        "name": "Acme SSO",
        "client_id": "acme-client",
        "client_secret": SECRET,
        "login_url": "https://idp.acme.test/authorize?response_type=code&client_id=%ClientID%"
        "&redirect_uri=%RedirectURL%&state=%State%&scope=%Scope%",
        "token_url": "https://idp.acme.test/token",
        "token_method": "POST",
        "token_headers": "Accept: application/json",
        "token_body": DEFAULT_TOKEN_BODY,
        "refresh_token_body": DEFAULT_REFRESH_TOKEN_BODY,
        "access_token_path": "access_token",
        "profile_url": "https://idp.acme.test/userinfo",
        "profile_headers": "Authorization: Bearer %Token%",
        "issuer": "",
        "jwks_url": "",
        "scope": "openid email",
        "logout_url": "https://idp.acme.test/logout?return=%ReturnToURL%",
        "profile_edit_url": "",
        "logoff_url": "https://idp.acme.test/revoke",
        "logoff_method": "POST",
        "logoff_headers": "Accept: application/json",
        "logoff_body": "token=%RefreshToken%&token_type_hint=refresh_token&client_id=%ClientID%",
        "recheck_minutes": "15",
        "grace_minutes": "30",
        "login_label": "Sign in with Acme",
        "login_mode": "local_and_remote",
        "onboarding_team_id": "",
        "enabled": "y",
        "param_user_id_path": "sub",
        "param_email_path": "email",
        "param_email_can_upgrade": "y",
        "param_email_must_supply": "y",
        "param_first_name_path": "given_name",
        "param_last_name_path": "family_name",
        "param_groups_path": "groups",
    }


def secret_bound_fields(form_data: dict[str, Any]) -> dict[str, Any]:
    """Return the fields the stored secret is bound to, as ``form_data`` has them.

    A system created with these can be edited with a blank Client Secret (nothing the secret
    is bound to changes).
    """
    return {
        key: form_data[key]
        for key in ("client_id", "token_url", "token_headers", "token_body", "refresh_token_body")
    }


def secret_in(text: str, secret: str = SECRET) -> bool:
    """Tell whether the secret appears in text, raw or HTML-escaped."""
    return secret in text or html.escape(secret) in text or html.escape(secret, quote=False) in text
