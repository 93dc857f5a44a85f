"""Import cannot move the stored secret, and cannot crash on a hostile file (issue 12).

Finding 3: `sso import --replace` with a file pointing the token endpoint at another host kept
the stored secret and would send it there. Finding 9b: a file nested 100,000 levels deep
answered 500. Both are refused with a message, and nothing is written.
"""

from __future__ import annotations

import io
import json

import pytest

from portal.extensions import db
from portal.models import AuditEvent, AuthSystem
from portal.services.auth_systems import read_client_secret
from portal.services.secrets import encrypt_secret
from portal.services.transfer import (
    MAX_DEPTH,
    ImportInvalid,
    export_auth_system,
    import_auth_system,
    parse_export,
)
from tests.support.transfer import SECRET

EVIL_TOKEN_URL = "https://collector.evil.example/token"
DEEP = "[" * 100_000 + "]" * 100_000


def _moved(configured) -> dict:
    doc = export_auth_system(configured)
    doc["auth_system"]["token_url"] = EVIL_TOKEN_URL
    return doc


def _unchanged(configured) -> None:
    db.session.expire_all()
    stored = db.session.get(AuthSystem, configured.id)
    assert stored.token_url == "https://idp.acme.test/token", "the new token host was saved"
    assert read_client_secret(stored) == SECRET


def _upload(client, body: bytes, **fields):
    data = {"file": (io.BytesIO(body), "acme-sso.json"), **fields}
    return client.post("/admin/auth-systems/import", data=data, content_type="multipart/form-data")


# --- finding 3: replace cannot send the stored secret elsewhere --------------------------


def test_replace_moving_the_token_endpoint_without_a_secret_is_refused(configured):
    """The service refuses the file, names what changed and where a secret can come from."""
    events = db.session.query(AuditEvent).count()
    with pytest.raises(ImportInvalid) as caught:
        import_auth_system(_moved(configured), replace=True)
    [problem] = [p for p in caught.value.problems if p.startswith("Client Secret:")]
    assert "Type the Client Secret again: the Token API URL now goes to" in problem
    assert "collector.evil.example" in problem
    assert "--client-secret-file" in problem
    _unchanged(configured)
    assert db.session.query(AuditEvent).count() == events


def test_replace_with_a_given_secret_or_one_in_the_file_is_accepted(configured):
    """A secret given with the import (typed, or encrypted in the file) makes it valid."""
    system = import_auth_system(_moved(configured), client_secret="for-the-new-host", replace=True)
    assert system.token_url == EVIL_TOKEN_URL
    assert read_client_secret(system) == "for-the-new-host"

    doc = _moved(configured)
    doc["auth_system"]["token_url"] = "https://other.acme.test/token"
    doc["auth_system"]["client_secret_encrypted"] = encrypt_secret("from-the-file")
    system = import_auth_system(doc, replace=True)
    assert read_client_secret(system) == "from-the-file"


def test_cli_replace_moving_the_token_endpoint_is_refused(runner, configured, tmp_path):
    """`sso import --replace` prints the reason, exits 1 and writes nothing."""
    target = tmp_path / "moved.json"
    target.write_text(json.dumps(_moved(configured)))
    result = runner.invoke(args=["sso", "import", "--replace", str(target)])
    assert result.exit_code == 1
    assert "Type the Client Secret again" in result.output
    assert "--client-secret-file" in result.output
    assert "Nothing was imported." in result.output
    assert SECRET not in result.output
    _unchanged(configured)

    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("for-the-new-host\n")
    args = ["sso", "import", "--replace", str(target), "--client-secret-file", str(secret_file)]
    accepted = runner.invoke(args=args)
    assert accepted.exit_code == 0, accepted.output
    db.session.expire_all()
    assert db.session.get(AuthSystem, configured.id).token_url == EVIL_TOKEN_URL


def test_admin_replace_moving_the_token_endpoint_is_refused(manager_client, configured):
    """The import page lists the problem and saves nothing."""
    body = json.dumps(_moved(configured)).encode()
    response = _upload(manager_client, body, replace="y")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Type the Client Secret again" in page
    assert SECRET not in page
    _unchanged(configured)


# --- finding 9b: nesting depth -------------------------------------------------------------


def test_a_deeply_nested_file_is_refused_before_parsing():
    """100,000 levels answer a clear problem, not a RecursionError."""
    with pytest.raises(ImportInvalid) as caught:
        parse_export(DEEP.encode())
    assert caught.value.problems == [
        f"The file nests objects or lists more than {MAX_DEPTH} levels deep; a Portal export "
        "has four levels. It is not a Portal export."
    ]


def test_nesting_inside_strings_does_not_count(configured):
    """Brackets inside text values (a JMESPath path, say) are not nesting."""
    doc = export_auth_system(configured)
    doc["auth_system"]["login_label"] = "[[[[{{{{" * 10
    assert parse_export(json.dumps(doc).encode()) == doc


def test_the_depth_limit_leaves_room_for_an_export():
    """A document exactly at the limit parses; one level more is refused."""
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_export(at_limit.encode()) is not None
    with pytest.raises(ImportInvalid):
        parse_export(("[" + at_limit + "]").encode())


def test_admin_upload_of_a_deep_file_answers_the_problem(manager_client, count_rows):
    """The import page shows the message (status 200, not 500) and writes nothing."""
    before = count_rows()
    response = _upload(manager_client, ("{" + '"a":' * 1 + DEEP + "}").encode())
    assert response.status_code == 200
    assert "levels deep" in response.get_data(as_text=True)
    assert count_rows() == before


def test_cli_import_of_a_deep_file_answers_the_problem(runner, tmp_path, count_rows):
    """`sso import` prints the problem and exits 1."""
    before = count_rows()
    target = tmp_path / "deep.json"
    target.write_text(DEEP)
    result = runner.invoke(args=["sso", "import", str(target)])
    assert result.exit_code == 1
    assert "levels deep" in result.output
    assert "Nothing was imported." in result.output
    assert count_rows() == before


def test_trust_settings_travel_with_an_export(configured):
    """trusts_email and trusts_username are exported and restored by an import."""
    configured.trusts_email = True
    db.session.commit()
    doc = export_auth_system(configured)
    assert doc["auth_system"]["trusts_email"] is True
    assert doc["auth_system"]["trusts_username"] is False
    doc["auth_system"]["trusts_email"] = False
    doc["auth_system"]["trusts_username"] = True
    system = import_auth_system(doc, replace=True)
    assert (system.trusts_email, system.trusts_username) == (False, True)


def test_a_trust_setting_that_is_not_a_boolean_is_refused(configured):
    """A trust setting must be true or false: "yes" is not silently taken as on."""
    doc = export_auth_system(configured)
    doc["auth_system"]["trusts_email"] = "yes"
    with pytest.raises(ImportInvalid) as caught:
        import_auth_system(doc, replace=True)
    assert "This provider verifies email addresses: must be true or false." in caught.value.problems
    db.session.expire_all()
    assert db.session.get(AuthSystem, configured.id).trusts_email is False
