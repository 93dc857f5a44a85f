"""The export document and the import service: round trip, validation, nothing half-written."""

from __future__ import annotations

import copy
import json

import pytest
from cryptography.fernet import Fernet

from portal.extensions import db
from portal.services.auth_systems import (
    delete_auth_system,
    get_system_by_slug,
    read_client_secret,
)
from portal.services.group_mapping import (
    check_sign_in_allowed,
    get_mapping_settings,
    resolve_member_groups,
)
from portal.services.groups import list_groups
from portal.services.secrets import encrypt_secret
from portal.services.transfer import (
    ImportInvalid,
    dump_export,
    export_auth_system,
    import_auth_system,
    parse_export,
)
from tests.support.transfer import SECRET


def _problems(doc, **kwargs) -> list[str]:
    with pytest.raises(ImportInvalid) as caught:
        import_auth_system(doc, **kwargs)
    return caught.value.problems


def test_round_trip_gives_the_same_document_and_a_working_system(configured):
    """Export, delete, import with the secret: exporting again gives the same file."""
    before = dump_export(export_auth_system(configured))
    delete_auth_system(configured)
    assert get_system_by_slug("acme-sso") is None

    system = import_auth_system(parse_export(before), client_secret=SECRET)

    assert dump_export(export_auth_system(system)) == before
    assert read_client_secret(system) == SECRET, "the imported secret does not decrypt"
    assert system.enabled is True
    assert system.param("email").can_upgrade and system.param("email").must_supply


def test_team_and_mapping_rules_survive_the_round_trip(configured):
    """The Onboarding Team, default group, restriction and rules work after a re-import."""
    text = dump_export(export_auth_system(configured))
    delete_auth_system(configured)
    system = import_auth_system(parse_export(text), client_secret=SECRET)

    assert system.onboarding_team.name == "Early Access"
    names = {g.id: g.name for g in list_groups()}
    groups = resolve_member_groups(
        system, {"groups": [{"code": "gold"}], "membership_status": "active"}
    )
    assert {names[g] for g in groups} == {"Gold Members", "Staff"}
    assert check_sign_in_allowed(system, {"membership_status": "Lapsed"}) == (
        "Renew your membership first."
    )
    assert check_sign_in_allowed(system, {"membership_status": "grace period"}) is None
    assert [r.values_display for r in system.group_rules] == [
        ["GOLD"],
        ["Active", "Grace Period"],
        ["Lifetime"],
    ]


def test_document_names_the_team_and_groups_and_never_holds_the_secret(configured):
    """The download-style export names team and groups and holds no secret in any form."""
    doc = export_auth_system(configured)
    text = dump_export(doc)
    assert doc["portal_export"] == 1
    assert doc["auth_system"]["onboarding_team"] == "Early Access"
    assert doc["group_mapping"]["default_group"] == "Staff"
    assert doc["group_mapping"]["rules"][0] == {
        "kind": "groups_contains",
        "values": ["GOLD"],
        "group": "Gold Members",
    }
    assert SECRET not in text, "the plaintext secret is in the export"
    assert configured.client_secret_encrypted not in text, "the stored token is in the export"
    assert not {"client_secret", "client_secret_encrypted"} & doc["auth_system"].keys()
    assert "onboarding_team_id" not in doc["auth_system"]


def test_include_secret_adds_it_encrypted_and_import_restores_it(configured):
    """With include_secret the file carries a token (not the plaintext) that import decrypts."""
    text = dump_export(export_auth_system(configured, include_secret=True))
    assert SECRET not in text, "the plaintext secret is in the export"
    assert "client_secret_encrypted" in json.loads(text)["auth_system"]
    delete_auth_system(configured)
    system = import_auth_system(parse_export(text))
    assert read_client_secret(system) == SECRET, "the secret was not restored"


def test_a_secret_encrypted_by_another_site_is_a_clear_error(app, configured, count_rows):
    """A token made with keys this site lacks is reported, and nothing is written."""
    doc = export_auth_system(configured)
    delete_auth_system(configured)
    doc["auth_system"]["client_secret_encrypted"] = encrypt_secret(
        SECRET, keys=[Fernet.generate_key().decode()]
    )
    before = count_rows()
    problems = _problems(doc)
    assert any("cannot be decrypted with this site's PORTAL_ENCRYPTION_KEYS" in p for p in problems)
    assert not any("Client Secret is required" in p for p in problems)
    assert count_rows() == before


def test_a_plaintext_secret_in_the_file_is_refused_without_echoing_it(configured, count_rows):
    """A file with a plaintext client_secret is refused and the message does not repeat it."""
    doc = export_auth_system(configured)
    delete_auth_system(configured)
    doc["auth_system"]["client_secret"] = SECRET
    before = count_rows()
    problems = _problems(doc, client_secret="typed-secret")
    assert any("a plaintext client_secret is not accepted" in p for p in problems)
    assert SECRET not in " ".join(problems), "the plaintext secret was echoed"
    assert count_rows() == before


def test_an_invalid_file_reports_every_problem_and_writes_nothing(
    configured, count_rows, create_group
):
    """Form errors, unknown keys, wrong types and unknown names are all reported at once."""
    doc = export_auth_system(configured)
    delete_auth_system(configured)
    bad = copy.deepcopy(doc)
    bad["auth_system"]["token_url"] = "ftp://idp.acme.test/token"
    bad["auth_system"]["login_url"] = "https://idp.acme.test/authorize"
    bad["auth_system"]["params"]["user_id"]["path"] = "sub[["
    bad["auth_system"]["enabled"] = "yes"
    bad["auth_system"]["colour"] = "blue"
    bad["auth_system"]["onboarding_team"] = "Nobody Here"
    bad["group_mapping"]["rules"][1]["group"] = "Platinum"
    bad["group_mapping"]["rules"].append({"kind": "age_over", "values": ["18"], "group": "Staff"})
    bad["extra"] = 1
    before = count_rows()

    problems = _problems(bad, client_secret=SECRET)

    expected = [
        "Token API URL: The Token API URL must be an absolute http:// or https:// address.",
        "Identity Provider Login URL: The Identity Provider Login URL must contain %State%.",
        "User ID: not a valid path",
        "Enabled: must be true or false.",
        'auth_system: unknown key(s) "colour"',
        'Onboarding Team: no team named "Nobody Here" exists on this site',
        'Group mapping, rule 2: no member group named "Platinum" exists on this site.',
        "Group mapping, rule 4: kind must be one of",
        'The file: unknown key(s) "extra"',
    ]
    for text in expected:
        assert any(text in p for p in problems), f"missing: {text}"
    assert count_rows() == before


def test_the_same_messages_as_the_form(app, system_data):
    """Import reports the form's own message, after the field's label."""
    from portal.services.auth_systems import validate_auth_system_data

    system_data["token_url"] = "http://idp.acme.test/token"
    form_message = validate_auth_system_data(system_data)["token_url"][0]
    doc = {"portal_export": 1, "auth_system": {**system_data}}
    del doc["auth_system"]["client_secret"]
    assert f"Token API URL: {form_message}" in _problems(doc, client_secret=SECRET)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"not json at all", "The file is not valid JSON: Expecting value (line 1, column 1)."),
        (b"[1, 2]", "The file must hold a JSON object"),
        (b'{"auth_system": {}}', 'the "portal_export" marker is missing'),
        (b'{"portal_export": 2, "auth_system": {}}', 'format version "2"; this site reads'),
        (b"\xff\xfe\x00", "The file is not UTF-8 text"),
    ],
)
def test_a_file_that_is_not_an_export_is_named_so(app, text, message):
    """Not JSON, not an object, no marker, another version: each gets its own message."""
    with pytest.raises(ImportInvalid) as caught:
        import_auth_system(parse_export(text), client_secret=SECRET)
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_an_existing_name_without_replace_is_refused(configured, count_rows):
    """Importing over an existing Name without replace changes nothing and says how to."""
    doc = export_auth_system(configured)
    doc["auth_system"]["client_id"] = "changed"
    before = count_rows()
    problems = _problems(doc, client_secret=SECRET)
    assert "Name: An authentication system named Acme SSO already exists." in problems
    assert "To overwrite the existing system, import again with Replace." in problems
    db.session.expire_all()
    assert configured.client_id == "acme-client"
    assert count_rows() == before


def test_replace_overwrites_in_place_and_a_blank_secret_keeps_the_stored_one(
    configured, count_rows
):
    """With replace the same row is updated, rules replaced, and the stored secret kept."""
    doc = export_auth_system(configured)
    # A change the stored secret is not bound to (the Client ID would need the secret again).
    doc["auth_system"]["login_label"] = "Changed label"
    doc["group_mapping"]["rules"] = doc["group_mapping"]["rules"][:1]
    system_id = configured.id

    system = import_auth_system(doc, replace=True)

    assert system.id == system_id
    assert system.login_label == "Changed label"
    assert read_client_secret(system) == SECRET, "the stored secret was not kept"
    assert count_rows()["group_rules"] == 1


def test_a_new_system_needs_a_client_secret(configured, count_rows):
    """Without a secret (typed or in the file) a new system is refused, as the form does."""
    doc = export_auth_system(configured)
    delete_auth_system(configured)
    before = count_rows()
    assert "Client Secret: Client Secret is required." in _problems(doc)
    assert count_rows() == before


def test_an_import_is_in_the_audit_log_without_the_secret(configured, manager):
    """An import records who created the system and its mapping, the secret only as changed."""
    import sqlalchemy as sa

    from portal.models import AuditEvent
    from portal.services import audit

    doc = export_auth_system(configured)
    delete_auth_system(configured)
    last = db.session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0
    import_auth_system(doc, client_secret=SECRET, actor=manager)

    events = list(
        db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.id > last).order_by(AuditEvent.id)
        )
    )
    assert [e.kind for e in events] == [audit.SYSTEM_CREATED, audit.MAPPING_CHANGED]
    assert all(e.actor_id == manager.id and e.details["source"] == "import" for e in events)
    secret_change = [c for c in events[0].details["changes"] if c["field"] == "client_secret"]
    assert secret_change == [{"field": "client_secret", "label": "Client Secret", "changed": True}]
    added = [c["new"] for c in events[1].details["changes"] if c["label"] == "Rule added"]
    assert len(added) == 3
    assert SECRET not in json.dumps([e.details for e in events]), "the secret is in the log"


def test_access_rules_survive_the_round_trip_and_refuse_as_before(configured):
    """Allowed Email Domains, Required Claim and Existing Accounts Only travel in the file."""
    from portal.services.group_mapping import new_account_refusal, save_mapping_settings

    settings = get_mapping_settings(configured)
    save_mapping_settings(
        configured,
        default_group_id=settings.default_group_id,
        restrict_sign_in=False,
        allowed_statuses="",
        deny_message="Staff only.",
        group_object_key="",
        allowed_email_domains="acme.test",
        required_claim="email_verified",
        required_claim_message="Verify your address first.",
        existing_accounts_only=True,
        existing_accounts_message="Ask IT for an account.",
    )
    text = dump_export(export_auth_system(configured))
    delete_auth_system(configured)

    system = import_auth_system(parse_export(text), client_secret=SECRET)

    assert dump_export(export_auth_system(system)) == text
    verified = {"email_verified": True}
    assert check_sign_in_allowed(system, {"email": "a@acme.test"}, verified) is None
    assert check_sign_in_allowed(system, {"email": "a@acme.test.evil"}, verified) == "Staff only."
    assert check_sign_in_allowed(system, {"email": "a@acme.test"}, {}) == (
        "Verify your address first."
    )
    assert new_account_refusal(system).message == "Ask IT for an account."


def test_bad_access_rules_in_a_file_are_reported_and_nothing_is_written(configured, count_rows):
    """A bad domain, an unparsable Required Claim and a non-boolean flag: all reported."""
    doc = export_auth_system(configured)
    delete_auth_system(configured)
    doc["group_mapping"].update(
        allowed_email_domains=["acme.test", "not a domain"],
        required_claim="roles[?",
        existing_accounts_only="yes",
    )
    before = count_rows()

    problems = _problems(doc, client_secret=SECRET)

    expected = [
        "allowed_email_domains: “not a domain” is not a domain name",
        "The Required Claim is not a valid JMESPath expression",
        "existing_accounts_only must be true or false.",
    ]
    for text in expected:
        assert any(text in p for p in problems), f"missing: {text} in {problems}"
    assert count_rows() == before


def test_a_manager_role_rule_survives_the_round_trip(configured):
    """A "Groups contains V → community manager" rule travels with a null group."""
    from portal.models.group import RULE_GROUPS_MANAGER
    from portal.services.group_mapping import add_rule, provider_grants_manager

    add_rule(configured, RULE_GROUPS_MANAGER, "Board", None)
    doc = export_auth_system(configured)
    assert {"kind": RULE_GROUPS_MANAGER, "values": ["Board"], "group": None} in (
        doc["group_mapping"]["rules"]
    )
    delete_auth_system(configured)

    system = import_auth_system(doc, client_secret=SECRET)

    assert provider_grants_manager(system, {"groups": ["board"]}) is True
    assert provider_grants_manager(system, {"groups": ["gold"]}) is False
