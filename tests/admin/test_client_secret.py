"""The Client Secret is write-only, encrypted at rest, and survives key rotation."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from portal.extensions import db
from portal.services.auth_systems import get_system_by_slug, read_client_secret
from portal.services.secrets import SecretUnreadable, decrypt_secret
from tests.support.auth_system_form import SECRET, secret_in
from tests.support.keys import TEST_KEY


@pytest.fixture
def saved(manager_client, form_data):
    """Save a system through the form and return it."""
    response = manager_client.post("/admin/auth-systems/new", data=form_data, follow_redirects=True)
    assert "Authentication system Acme SSO added." in response.get_data(as_text=True)
    return get_system_by_slug("acme-sso")


def test_secret_appears_on_no_admin_page(manager_client, form_data, saved):
    """List, add, edit, edit with errors and confirm delete never show the secret."""
    pages = {
        "list": manager_client.get("/admin/auth-systems"),
        "add": manager_client.get("/admin/auth-systems/new"),
        "add with errors": manager_client.post(
            "/admin/auth-systems/new", data={**form_data, "name": "Other", "client_id": ""}
        ),
        "edit": manager_client.get(f"/admin/auth-systems/{saved.id}/edit"),
        "edit with errors": manager_client.post(
            f"/admin/auth-systems/{saved.id}/edit", data={**form_data, "token_url": "nope"}
        ),
        "confirm delete": manager_client.get(f"/admin/auth-systems/{saved.id}/delete"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        assert not secret_in(response.get_data(as_text=True)), f"secret shown on {name}"
    assert "Nothing was saved" in pages["add with errors"].get_data(as_text=True)
    assert "Nothing was saved" in pages["edit with errors"].get_data(as_text=True)


def test_secret_is_not_in_the_flash_after_save(manager_client, form_data):
    """The message after saving does not repeat the secret."""
    response = manager_client.post("/admin/auth-systems/new", data=form_data, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Authentication system Acme SSO added." in page
    assert not secret_in(page)


def test_secret_is_not_logged(manager_client, form_data, caplog):
    """Saving, refusing and editing log nothing that holds the secret."""
    caplog.set_level(logging.DEBUG)
    manager_client.post("/admin/auth-systems/new", data={**form_data, "client_id": ""})
    manager_client.post("/admin/auth-systems/new", data=form_data)
    system = get_system_by_slug("acme-sso")
    manager_client.post(f"/admin/auth-systems/{system.id}/edit", data=form_data)
    assert not secret_in(caplog.text)


def test_secret_is_stored_encrypted(saved):
    """The raw column holds a Fernet token, not the plaintext, and decrypts to the secret."""
    raw = db.session.execute(
        sa.text("SELECT client_secret_encrypted FROM auth_systems WHERE id = :id"), {"id": saved.id}
    ).scalar_one()
    assert raw and not secret_in(raw)
    assert SECRET not in raw
    assert decrypt_secret(raw) == SECRET


def test_blank_secret_on_edit_keeps_the_stored_one(manager_client, form_data, saved):
    """Leaving Client Secret blank on edit keeps the secret already stored."""
    before = saved.client_secret_encrypted
    response = manager_client.post(
        f"/admin/auth-systems/{saved.id}/edit", data={**form_data, "client_secret": ""}
    )
    assert response.status_code == 302
    db.session.refresh(saved)
    assert saved.client_secret_encrypted == before
    assert read_client_secret(saved) == SECRET


def test_new_secret_on_edit_replaces_the_stored_one(manager_client, form_data, saved):
    """Typing a new Client Secret on edit replaces the stored one."""
    manager_client.post(
        f"/admin/auth-systems/{saved.id}/edit", data={**form_data, "client_secret": "n3w"}
    )
    db.session.refresh(saved)
    assert read_client_secret(saved) == "n3w"


def test_edit_form_says_a_secret_is_stored_without_showing_it(manager_client, saved):
    """The edit form explains that blank keeps the stored secret."""
    page = manager_client.get(f"/admin/auth-systems/{saved.id}/edit").get_data(as_text=True)
    assert "A secret is stored. Leave this blank to keep it" in page
    assert 'type="password" value=""' in page


def test_rotated_keys_still_read_old_secrets(app, saved):
    """With a new key first and the old one kept, the old secret is still readable."""
    new_key = Fernet.generate_key().decode()
    app.config["PORTAL_ENCRYPTION_KEYS"] = [new_key, TEST_KEY]
    db.session.expire_all()
    assert read_client_secret(get_system_by_slug("acme-sso")) == SECRET
    with pytest.raises(SecretUnreadable):
        decrypt_secret(saved.client_secret_encrypted, keys=[new_key])


def test_rotate_secrets_command_re_encrypts_under_the_newest_key(app, runner, saved):
    """`flask rotate-secrets` makes the new key alone able to read the secret."""
    new_key = Fernet.generate_key().decode()
    app.config["PORTAL_ENCRYPTION_KEYS"] = [new_key, TEST_KEY]
    result = runner.invoke(args=["rotate-secrets"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 1 secret(s)" in result.output
    assert not secret_in(result.output)
    db.session.expire_all()
    raw = db.session.execute(
        sa.text("SELECT client_secret_encrypted FROM auth_systems")
    ).scalar_one()
    assert decrypt_secret(raw, keys=[new_key]) == SECRET
    with pytest.raises(SecretUnreadable):
        decrypt_secret(raw, keys=[TEST_KEY])
