"""What a sign-in reads: every setting the engine uses comes from the saved system."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem
from portal.services.sso_login import build_sso_config
from portal.sso.engine import ProfileRequest, SSOConfig
from portal.sso.fields import ENGINE_FIELDS, FIELDS
from tests.support.auth_system_form import SECRET

#: SSOConfig attributes that are not settings a manager fills in.
NOT_SETTINGS = {"slug", "redirect_url", "params", "profile_requests"}


def test_every_setting_the_engine_reads_is_one_entry_of_the_field_table():
    """Adding an engine setting is one table entry: the table and SSOConfig name the same ones."""
    engine_settings = {f.name for f in dataclasses.fields(SSOConfig)} - NOT_SETTINGS
    assert set(ENGINE_FIELDS) == engine_settings
    assert all(name in FIELDS for name in ENGINE_FIELDS)


def test_a_saved_system_reaches_the_engine_as_the_manager_typed_it(manager_client, form_data):
    """Each engine setting of a saved system is the value of its form field."""
    form_data = {**form_data, "issuer": "https://idp.acme.test", "token_method": "GET"}
    assert manager_client.post("/admin/auth-systems/new", data=form_data).status_code == 302
    system = db.session.scalar(sa.select(AuthSystem))

    config = build_sso_config(system)

    assert config.client_secret == SECRET
    for name in ENGINE_FIELDS:
        if name != "client_secret":
            assert getattr(config, name) == form_data[name], name
    assert config.profile_requests == (
        ProfileRequest(url=form_data["profile_url"], headers=form_data["profile_headers"]),
    )


def test_the_profile_requests_reach_the_engine_in_order(manager_client, form_data):
    """Each filled Profile Request is one request of the engine's chain, in position order."""
    form_data = {
        **form_data,
        "profile2_method": "POST",
        "profile2_url": "https://idp.acme.test/api/member/%Response1:id%",
        "profile2_headers": "Content-Type: application/json",
        "profile2_body": '{"who": "%Response1:id%"}',
        "profile3_url": "https://idp.acme.test/api/groups?m=%Response2:Member.Id%",
    }
    assert manager_client.post("/admin/auth-systems/new", data=form_data).status_code == 302
    system = db.session.scalar(sa.select(AuthSystem))

    config = build_sso_config(system)

    assert [r.url for r in config.profile_requests] == [
        form_data["profile_url"],
        form_data["profile2_url"],
        form_data["profile3_url"],
    ]
    assert config.profile_requests[1] == ProfileRequest(
        url=form_data["profile2_url"],
        method="POST",
        headers="Content-Type: application/json",
        body='{"who": "%Response1:id%"}',
    )
    assert [r.position for r in system.profile_requests] == [1, 2, 3]


def test_settings_left_empty_take_the_engines_defaults(manager_client, form_data):
    """An empty optional setting reads as the engine's default."""
    assert manager_client.post("/admin/auth-systems/new", data=form_data).status_code == 302
    system = db.session.scalar(sa.select(AuthSystem))
    system.token_method = ""
    system.access_token_path = ""
    system.profile_url = ""

    config = build_sso_config(system)

    assert config.token_method == "POST"
    assert config.access_token_path == "access_token"
    assert config.profile_requests == ()
    assert config.jwks_url == ""
