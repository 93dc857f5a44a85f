"""`flask sso export` and `flask sso import`."""

from __future__ import annotations

import json
import os

from portal.extensions import db
from portal.services.auth_systems import delete_auth_system, get_system_by_slug, read_client_secret
from portal.services.transfer import dump_export, export_auth_system
from tests.support.transfer import SECRET


def test_export_prints_the_document_without_the_secret(runner, configured):
    """`sso export NAME` prints the same JSON as the admin download, with no secret."""
    result = runner.invoke(args=["sso", "export", "acme sso"])
    assert result.exit_code == 0
    assert result.stdout == dump_export(export_auth_system(configured))
    assert SECRET not in result.output, "the plaintext secret was printed"
    assert configured.client_secret_encrypted not in result.output, "the stored token was printed"


def test_export_with_include_secret_carries_it_encrypted_and_import_restores_it(
    runner, configured, tmp_path
):
    """--include-secret writes an owner-only file without the plaintext; import restores it."""
    target = tmp_path / "acme.json"
    result = runner.invoke(args=["sso", "export", "Acme SSO", "--include-secret", "-o", target])
    assert result.exit_code == 0
    text = target.read_text()
    assert SECRET not in text, "the plaintext secret is in the file"
    assert json.loads(text)["auth_system"]["client_secret_encrypted"]
    assert oct(os.stat(target).st_mode & 0o777) == "0o600"
    delete_auth_system(configured)

    imported = runner.invoke(args=["sso", "import", str(target)])

    assert imported.exit_code == 0
    assert "Imported authentication system Acme SSO." in imported.output
    assert read_client_secret(get_system_by_slug("acme-sso")) == SECRET, "secret not restored"


def test_import_reads_the_secret_from_a_file_or_a_hidden_prompt(runner, configured, tmp_path):
    """Without an encrypted secret, import takes --client-secret-file, else prompts."""
    export = tmp_path / "acme.json"
    export.write_text(dump_export(export_auth_system(configured)))
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    delete_auth_system(configured)

    from_file = runner.invoke(
        args=["sso", "import", str(export), "--client-secret-file", str(secret_file)]
    )
    assert from_file.exit_code == 0
    assert SECRET not in from_file.output, "the secret was echoed"
    assert read_client_secret(get_system_by_slug("acme-sso")) == SECRET, "secret not stored"

    delete_auth_system(get_system_by_slug("acme-sso"))
    prompted = runner.invoke(args=["sso", "import", str(export)], input="prompted-secret\n")
    assert prompted.exit_code == 0
    assert "Client Secret" in prompted.output
    assert "prompted-secret" not in prompted.output, "the prompt echoed the secret"
    assert read_client_secret(get_system_by_slug("acme-sso")) == "prompted-secret"


def test_import_prints_every_error_exits_non_zero_and_writes_nothing(
    runner, configured, tmp_path, count_rows
):
    """A broken file prints each problem, exits 1 and leaves the tables as they were."""
    doc = export_auth_system(configured)
    delete_auth_system(configured)
    doc["auth_system"]["token_url"] = "ftp://idp.acme.test/token"
    doc["auth_system"]["shoe_size"] = 42
    doc["group_mapping"]["default_group"] = "Platinum"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    before = count_rows()

    result = runner.invoke(args=["sso", "import", str(path)], input="whatever\n")

    assert result.exit_code == 1
    assert "Error: Token API URL: The Token API URL must be an absolute" in result.output
    assert 'Error: auth_system: unknown key(s) "shoe_size"' in result.output
    assert 'Error: Group mapping: no member group named "Platinum"' in result.output
    assert "Nothing was imported." in result.output
    assert count_rows() == before


def test_import_over_an_existing_name_needs_replace(runner, configured, tmp_path):
    """Without --replace an existing Name fails; with it the system is updated in place."""
    doc = export_auth_system(configured)
    doc["auth_system"]["login_label"] = "Sign in with Acme (new)"
    path = tmp_path / "acme.json"
    path.write_text(json.dumps(doc))

    refused = runner.invoke(args=["sso", "import", str(path)], input="x\n")
    assert refused.exit_code == 1
    assert "An authentication system named Acme SSO already exists." in refused.output

    replaced = runner.invoke(args=["sso", "import", str(path), "--replace"])
    assert replaced.exit_code == 0
    db.session.expire_all()
    assert configured.login_label == "Sign in with Acme (new)"
    assert read_client_secret(configured) == SECRET, "replace lost the stored secret"


def test_export_of_an_unknown_name_fails_clearly(runner, app):
    """Exporting a name no system has exits non-zero with a message."""
    result = runner.invoke(args=["sso", "export", "Nope"])
    assert result.exit_code != 0
    assert "No authentication system is named Nope." in result.output
