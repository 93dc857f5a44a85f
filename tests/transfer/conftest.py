"""Fixtures of the export/import tests: a fully configured system and row counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem, MemberGroup
from portal.services.auth_systems import create_auth_system
from portal.services.group_mapping import add_rule, save_mapping_settings
from tests.support.transfer import SECRET, WRITTEN


@pytest.fixture
def create_group(app) -> Callable[[str], MemberGroup]:
    """Return a factory of member groups."""

    def make(name: str) -> MemberGroup:
        group = MemberGroup(name=name, name_key=name.casefold(), description="")
        db.session.add(group)
        db.session.commit()
        return group

    return make


@pytest.fixture
def system_data() -> dict[str, Any]:
    """Return the service data of a valid system using most fields."""
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
        "token_body": "grant_type=authorization_code&code=%Code%&redirect_uri=%RedirectURL%"
        "&client_id=%ClientID%&client_secret=%ClientSecret%",
        "access_token_path": "access_token",
        "profile_url": "https://idp.acme.test/userinfo",
        "profile_headers": "Authorization: Bearer %Token%",
        "scope": "openid email",
        "logout_url": "https://idp.acme.test/logout?return=%ReturnToURL%",
        "login_label": "Sign in with Acme",
        "login_mode": "local_and_remote",
        "enabled": True,
        "params": {
            "user_id": {"path": "sub"},
            "email": {"path": "email", "can_upgrade": True, "must_supply": True},
            "first_name": {"path": "given_name"},
            "membership_status": {"path": "status"},
            "groups": {"path": "groups[].code"},
        },
    }


@pytest.fixture
def configured(app, create_team, create_group, system_data) -> AuthSystem:
    """Return a saved system with an Onboarding Team, mapping settings and three rules."""
    team = create_team("Early Access")
    gold, staff = create_group("Gold Members"), create_group("Staff")
    system = create_auth_system({**system_data, "onboarding_team_id": team.id})
    save_mapping_settings(
        system,
        default_group_id=staff.id,
        restrict_sign_in=True,
        allowed_statuses="Active, Grace Period",
        deny_message="Renew your membership first.",
        group_object_key="code",
    )
    add_rule(system, "groups_contains", "GOLD", gold.id)
    add_rule(system, "status_in", "Active, Grace Period", staff.id)
    add_rule(system, "type_in", "Lifetime", gold.id)
    return system


@pytest.fixture
def count_rows(app) -> Callable[[], dict[str, int]]:
    """Return a function counting the rows of every table an import writes to."""

    def count() -> dict[str, int]:
        db.session.expire_all()
        return {
            model.__tablename__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in WRITTEN
        }

    return count
