"""The admin Export download and Import upload screens."""

from __future__ import annotations

import io
import json

import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem
from portal.services.auth_systems import delete_auth_system, read_client_secret
from portal.services.transfer import dump_export, export_auth_system
from tests.support.transfer import SECRET


def _upload(client, text: str | bytes, **fields):
    body = text.encode() if isinstance(text, str) else text
    data = {"file": (io.BytesIO(body), "acme-sso.json"), **fields}
    return client.post("/admin/auth-systems/import", data=data, content_type="multipart/form-data")


def test_list_offers_export_per_system_and_import(manager_client, configured):
    """The User Authentication list links each system's Export and the Import page."""
    page = manager_client.get("/admin/auth-systems").get_data(as_text=True)
    assert f'href="/admin/auth-systems/{configured.id}/export"' in page
    assert 'aria-label="Export Acme SSO"' in page
    assert 'href="/admin/auth-systems/import"' in page


def test_export_is_a_json_download_without_the_secret(manager_client, configured):
    """Export downloads <slug>.json holding the configuration but never the secret."""
    response = manager_client.get(f"/admin/auth-systems/{configured.id}/export")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == 'attachment; filename="acme-sso.json"'
    text = response.get_data(as_text=True)
    assert json.loads(text)["auth_system"]["name"] == "Acme SSO"
    assert SECRET not in text, "the plaintext secret is in the download"
    assert configured.client_secret_encrypted not in text, "the stored token is in the download"
    assert "client_secret_encrypted" not in text, "a secret token is in the download"


def test_upload_creates_the_system_and_lands_on_its_edit_page(manager_client, configured):
    """Uploading a download with a typed secret recreates the system, with a flash."""
    text = manager_client.get(f"/admin/auth-systems/{configured.id}/export").get_data(as_text=True)
    delete_auth_system(configured)

    response = _upload(manager_client, text, client_secret=SECRET)

    system = db.session.scalars(sa.select(AuthSystem)).one()
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/auth-systems/{system.id}/edit"
    assert read_client_secret(system) == SECRET, "the typed secret was not stored"
    page = manager_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Authentication system Acme SSO imported." in page
    assert dump_export(export_auth_system(system)) == text


def test_upload_lists_every_problem_and_saves_nothing(manager_client, configured, count_rows):
    """A broken file shows each problem on the upload page; no row is written."""
    doc = export_auth_system(configured)
    delete_auth_system(configured)
    doc["auth_system"]["token_url"] = "ftp://idp.acme.test/token"
    doc["auth_system"]["onboarding_team"] = "Nobody Here"
    doc["group_mapping"]["rules"][0]["group"] = "Platinum"
    before = count_rows()

    response = _upload(manager_client, json.dumps(doc), client_secret=SECRET)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Nothing was imported: the file has 3 problems." in page
    assert "<li>Token API URL: The Token API URL must be an absolute http:// or https://" in page
    assert "Onboarding Team: no team named &#34;Nobody Here&#34; exists" in page
    assert "Group mapping, rule 1: no member group named &#34;Platinum&#34;" in page
    assert SECRET not in page, "the typed secret was rendered back"
    assert count_rows() == before


def test_upload_of_a_file_that_is_not_json_says_so(manager_client, count_rows):
    """A non-JSON file is refused with the parser's position, and nothing is written."""
    before = count_rows()
    page = _upload(manager_client, "<html>oops</html>", client_secret=SECRET).get_data(as_text=True)
    assert "The file is not valid JSON: Expecting value (line 1, column 1)." in page
    assert count_rows() == before


def test_upload_over_an_existing_name_needs_replace(manager_client, configured):
    """Without the Replace box an existing Name is refused; with it the system is updated."""
    doc = export_auth_system(configured)
    # A change the stored secret is not bound to (the Client ID would need the secret again).
    doc["auth_system"]["login_label"] = "Changed label"
    refused = _upload(manager_client, json.dumps(doc)).get_data(as_text=True)
    assert "An authentication system named Acme SSO already exists." in refused
    db.session.expire_all()
    assert configured.login_label == "Sign in with Acme"

    replaced = _upload(manager_client, json.dumps(doc), replace="y")
    assert replaced.headers["Location"] == f"/admin/auth-systems/{configured.id}/edit"
    db.session.expire_all()
    assert configured.login_label == "Changed label"
    assert read_client_secret(configured) == SECRET, "a blank secret did not keep the stored one"


def test_upload_page_has_the_labelled_fields_and_never_a_secret_value(manager_client):
    """The form has the file, write-only Client Secret and Replace fields, with labels."""
    page = manager_client.get("/admin/auth-systems/import").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page
    assert '<label for="file">Configuration file (JSON)</label>' in page
    assert '<label for="client_secret">Client Secret</label>' in page
    assert '<label for="replace">Replace the existing system with the same Name</label>' in page
    assert 'type="password"' in page and 'value=""' in page


def test_upload_without_a_file_asks_for_one(manager_client, count_rows):
    """Submitting no file shows the message beside the file field."""
    before = count_rows()
    page = manager_client.post("/admin/auth-systems/import", data={}).get_data(as_text=True)
    assert "Choose the exported JSON file." in page
    assert count_rows() == before


def test_upload_requires_the_csrf_token(app, manager_client, configured, count_rows):
    """With CSRF on, an upload without the token is refused and nothing is written."""
    text = dump_export(export_auth_system(configured))
    delete_auth_system(configured)
    before = count_rows()
    app.config["WTF_CSRF_ENABLED"] = True
    response = _upload(manager_client, text, client_secret=SECRET)
    assert response.status_code == 400
    assert count_rows() == before
    page = manager_client.get("/admin/auth-systems/import").get_data(as_text=True)
    assert 'name="csrf_token"' in page


def test_anonymous_visitors_are_sent_to_sign_in(client, configured):
    """Export and Import redirect an anonymous visitor to the login page."""
    for method, url in (
        ("GET", f"/admin/auth-systems/{configured.id}/export"),
        ("GET", "/admin/auth-systems/import"),
        ("POST", "/admin/auth-systems/import"),
    ):
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert response.headers["Location"].startswith("/login?next="), (method, url)


def test_members_get_403_and_no_download(client, auth, member, configured, count_rows):
    """A signed-in member gets 403 from Export and Import, and an upload writes nothing."""
    auth.login_member()
    export = client.get(f"/admin/auth-systems/{configured.id}/export")
    assert export.status_code == 403
    assert "Acme SSO" not in export.get_data(as_text=True)
    assert client.get("/admin/auth-systems/import").status_code == 403
    doc = export_auth_system(configured)
    doc["auth_system"]["name"] = "Sneaky"
    before = count_rows()
    assert _upload(client, json.dumps(doc), client_secret=SECRET).status_code == 403
    assert count_rows() == before


def test_export_of_an_unknown_system_is_404(manager_client):
    """Exporting a system that does not exist gives the 404 page."""
    assert manager_client.get("/admin/auth-systems/999/export").status_code == 404
