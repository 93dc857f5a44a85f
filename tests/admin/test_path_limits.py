"""JMESPath paths are bounded at save time and at sign-in (issue 12, finding 9d).

The attack: a 312-character path that expands to millions of values was accepted and ran for
seconds at every sign-in. It is refused beside its field when saved; stored directly in the
database (bypassing the form), it makes the sign-in fail with the usual failure page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from portal.devidp import OIDCProvider
from portal.extensions import db
from portal.models import AuthSystem, Identity, User
from portal.sso.idtoken import get_jwks_cache
from tests.support.failures import assert_failure_page
from tests.support.pages import errors_beside
from tests.support.providers import CLIENT_ID, CLIENT_SECRET, SSO, Provider, jane, oidc_system

NEW = "/admin/auth-systems/new"
EXPLOSIVE = "[@,@,@,@][]" * 28 + ".sub"


def _systems() -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem))


def test_the_312_character_path_is_refused_beside_the_profile_field(manager_client, form_data):
    """As User ID path it is refused with its length and the reason; nothing is saved."""
    page = manager_client.post(NEW, data={**form_data, "param_user_id_path": EXPLOSIVE})
    [message] = errors_beside(page.get_data(as_text=True), "param_user_id_path")
    assert message.startswith("The User ID path is 312 characters long; a path may have at most")
    assert _systems() == 0


def test_a_short_explosive_path_is_refused_as_access_token_path(manager_client, form_data):
    """Under the length limit, a multiplying path is refused beside Access Token Path."""
    path = "[@,@,@,@][]" * 4 + ".access_token"
    page = manager_client.post(NEW, data={**form_data, "access_token_path": path})
    [message] = errors_beside(page.get_data(as_text=True), "access_token_path")
    assert message.startswith("The Access Token Path multiplies the document more than")
    assert _systems() == 0


@pytest.fixture
def provider(app, create_auth_system) -> Iterator[Provider]:
    """A loopback OIDC provider with Jane, and a system configured for it."""
    get_jwks_cache().clear()
    idp = OIDCProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=["http://localhost/sso/loopback-oidc/callback"],
        members=[jane()],
    )
    with idp:
        provider = Provider("oidc", idp, lambda **o: oidc_system(create_auth_system, idp, **o))
        provider.configure()
        yield provider
    get_jwks_cache().clear()


@pytest.mark.parametrize("path", [EXPLOSIVE, "[@,@,@,@][]" * 20 + ".sub"], ids=["long", "short"])
def test_a_path_stored_without_the_form_fails_the_sign_in_cleanly(provider, client, caplog, path):
    """The sign-in stops with the settings-are-invalid page; nobody is signed in or created."""
    caplog.set_level(logging.INFO)
    provider.system.param("first_name").path = path
    db.session.commit()

    response = SSO(client).sign_in(provider)

    assert response.status_code == 502  # the failure page of a misconfigured provider
    assert_failure_page(
        response,
        caplog,
        "The sign-in settings for this identity provider are invalid.",
        "template_error",
        provider.issued_secrets(),
    )
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Identity)) == 0
