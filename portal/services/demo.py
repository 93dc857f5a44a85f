"""The development demo: an authentication system wired to the loopback demo provider.

`make run` starts `python -m portal.devidp` on 127.0.0.1:5001 and calls
`flask --app portal ensure-demo --with-idp http://127.0.0.1:5001`, so that a newcomer can
sign in as a demo member within a minute. Never used in production (the CLI refuses).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem, ContentItem, MemberGroup
from portal.models.content import (
    KIND_LIBRARY,
    KIND_RECORDING,
    KIND_SUBSCRIPTION,
    VISIBILITY_GROUPS,
    VISIBILITY_SIGNED_IN,
)
from portal.services.auth_systems import (
    create_auth_system,
    default_auth_system_data,
    update_auth_system,
)
from portal.services.content import ContentData, create_content
from portal.services.group_mapping import add_rule, list_rules
from portal.services.groups import create_group
from portal.sso.fields import LOGIN_LOCAL_AND_REMOTE

DEMO_SYSTEM_NAME = "Demo Identity Provider"
DEMO_CLIENT_ID = "portal-demo"
#: Demo member groups: (name, description, the provider's group code that maps onto it).
DEMO_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("Webinar viewers", "Members whose provider says WEBINARS", "WEBINARS"),
    ("Library members", "Members whose provider says LIBRARY", "LIBRARY"),
)
#: Demo content: (title, kind, group name or None for everyone signed in).
DEMO_CONTENT: tuple[tuple[str, str, str | None], ...] = (
    ("Welcome to the community", KIND_SUBSCRIPTION, None),
    ("Annual conference keynote (recording)", KIND_RECORDING, "Webinar viewers"),
    ("Research library", KIND_LIBRARY, "Library members"),
)


def read_or_create_demo_secret(instance_path: str) -> Path:
    """Return the file holding the demo client secret, creating a random one once."""
    path = Path(instance_path) / "demo-idp-client-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path


def demo_system_data(issuer: str, client_secret: str) -> dict[str, Any]:
    """Return the form values of the demo system for the provider at ``issuer``."""
    data = default_auth_system_data()
    data.update(
        name=DEMO_SYSTEM_NAME,
        client_id=DEMO_CLIENT_ID,
        client_secret=client_secret,
        login_url=(
            f"{issuer}/authorize?response_type=code&client_id=%ClientID%"
            "&redirect_uri=%RedirectURL%&scope=%Scope%&state=%State%&nonce=%Nonce%"
            "&code_challenge=%CodeChallenge%&code_challenge_method=S256"
        ),
        token_url=f"{issuer}/token",
        token_headers="Authorization: Basic %BasicAuth%",
        token_body=(
            "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
            "&code_verifier=%CodeVerifier%"
        ),
        profile_url=f"{issuer}/userinfo",
        profile_headers="Authorization: Bearer %Token%",
        issuer=issuer,
        jwks_url=f"{issuer}/jwks",
        logout_url=f"{issuer}/logout?post_logout_redirect_uri=%ReturnToURL%&id_token_hint=%IDToken%",
        profile_edit_url=f"{issuer}/account?return_to=%ReturnToURL%",
        login_label="Sign in with the demo provider",
        login_mode=LOGIN_LOCAL_AND_REMOTE,
        enabled=True,
    )
    data["params"].update(
        user_id={"path": "sub", "can_upgrade": False, "must_supply": True},
        username={"path": "preferred_username", "can_upgrade": False, "must_supply": False},
        email={"path": "email", "can_upgrade": True, "must_supply": True},
        first_name={"path": "given_name", "can_upgrade": False, "must_supply": False},
        last_name={"path": "family_name", "can_upgrade": False, "must_supply": False},
        membership_status={"path": "membership_status", "can_upgrade": False, "must_supply": False},
        membership_type={"path": "membership_type", "can_upgrade": False, "must_supply": False},
        groups={"path": "groups", "can_upgrade": False, "must_supply": False},
    )
    return data


def ensure_demo_system(issuer: str, client_secret: str) -> AuthSystem:
    """Create or refresh the demo authentication system (validated like the form)."""
    data = demo_system_data(issuer.rstrip("/"), client_secret)
    existing = db.session.scalar(
        sa.select(AuthSystem).where(AuthSystem.name_key == DEMO_SYSTEM_NAME.lower())
    )
    if existing is None:
        system = create_auth_system(data)
    else:
        system = update_auth_system(existing, data)
    ensure_demo_content(system)
    return system


def ensure_demo_content(system: AuthSystem) -> None:
    """Create the demo groups, their mapping rules and content once, so groups gate something.

    Jane (WEBINARS, LIBRARY) sees all three items; Mo (no groups) sees only the welcome page.
    Nothing is created again once the demo groups exist, so a manager's edits are kept.
    """
    names = [name for name, _description, _code in DEMO_GROUPS]
    if db.session.scalar(sa.select(MemberGroup.id).where(MemberGroup.name.in_(names))):
        return
    groups: dict[str, MemberGroup] = {}
    for name, description, code in DEMO_GROUPS:
        groups[name] = create_group(name, description)
        if not any(code.casefold() in (r.values or []) for r in list_rules(system)):
            add_rule(system, "groups_contains", code, groups[name].id)
    if db.session.scalar(sa.select(ContentItem.id).limit(1)) is not None:
        return
    for title, kind, group_name in DEMO_CONTENT:
        create_content(
            ContentData(
                title=title,
                kind=kind,
                url="https://video.example.com/demo",
                description="Demo content created by make run.",
                visibility=VISIBILITY_GROUPS if group_name else VISIBILITY_SIGNED_IN,
                group_ids=[groups[group_name].id] if group_name else [],
            )
        )
