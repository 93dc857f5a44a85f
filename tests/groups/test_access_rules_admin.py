"""The access rules on the Member groups tab: saved, refused with a message, audited."""

from __future__ import annotations

import pytest

from portal.services import group_mapping as group_svc
from tests.support.pages import PageParser
from tests.support.rows import events

LABELS = [
    "Allowed Email Domains",
    "Required Claim",
    "Existing Accounts Only",
]


@pytest.fixture
def system(create_auth_system):
    return create_auth_system(name="Member Center")


def _post(client, system, **data):
    form = {"settings-default_group": 0, **{f"settings-{k}": v for k, v in data.items()}}
    return client.post(f"/admin/auth-systems/{system.id}/groups/settings", data=form)


def test_the_member_groups_tab_shows_the_access_rules_by_their_labels(manager_client, system):
    """The three rules stand beside the Membership Status restriction, labelled verbatim."""
    page = manager_client.get(f"/admin/auth-systems/{system.id}/groups").get_data(as_text=True)
    parser = PageParser()
    parser.feed(page)
    labels = parser.label_texts()
    for label in LABELS:
        assert label in labels, labels


def test_saving_the_access_rules_applies_them_and_audits_each_change(manager_client, system):
    """Domains, a Required Claim with its message and Existing Accounts Only are saved as
    typed, used by the next sign-in check, and listed one by one in the audit log."""
    resp = _post(
        manager_client,
        system,
        allowed_email_domains="Example.org\n@staff.example.org",
        required_claim="email_verified",
        required_claim_message="Verify your address first.",
        existing_accounts_only="y",
    )

    assert resp.status_code == 302, resp.get_data(as_text=True)[:400]
    settings = group_svc.get_mapping_settings(system)
    assert settings.allowed_email_domains == ["example.org", "staff.example.org"]
    assert settings.existing_accounts_only is True
    profile = {"email_verified": False}
    assert group_svc.check_sign_in_allowed(system, {"email": "a@example.org"}, profile) == (
        "Verify your address first."
    )
    (event,) = events("mapping.changed")
    changed = {c["label"]: c["new"] for c in event.details["changes"]}
    assert changed["Allowed Email Domains"] == "example.org, staff.example.org"
    assert changed["Required Claim"] == "email_verified"
    assert changed["Existing Accounts Only"] == "Yes"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"allowed_email_domains": "example.org\n*.example.org"}, "is not a domain name"),
        ({"allowed_email_domains": "jane@example.org"}, "is not a domain name"),
        ({"allowed_email_domains": "exa mple.org"}, "is not a domain name"),
        ({"required_claim": "roles[?"}, "is not a valid JMESPath expression"),
        (
            {"required_claim": "[@,@,@,@][][@,@,@,@][][@,@,@,@][][@,@,@,@][]"},
            "multiplies the document",
        ),
    ],
)
def test_a_bad_access_rule_is_refused_with_a_message_and_nothing_changes(
    manager_client, system, data, message
):
    """A typo in a domain or an unparsable expression: 400, the reason, nothing saved."""
    resp = _post(manager_client, system, existing_accounts_only="y", **data)

    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)
    settings = group_svc.get_mapping_settings(system)
    assert settings.existing_accounts_only is False
    assert not settings.allowed_email_domains and not settings.required_claim
    assert events("mapping.changed") == []


def test_email_domains_compare_exactly_and_without_regard_to_case():
    """The domain after the last @ must equal a listed one: no suffix or prefix match."""
    assert group_svc.email_domain("Jane@Example.ORG") == "example.org"
    assert group_svc.email_domain('"a@example.org"@evil.test') == "evil.test"
    assert group_svc.email_domain("jane@example.org ") == "example.org"
    assert group_svc.email_domain("jane@exa mple.org") is None
    assert group_svc.email_domain("jane@example.org\n") == "example.org"
    assert group_svc.email_domain("jane\n@example.org") is None
    assert group_svc.email_domain("@example.org") is None
    assert group_svc.email_domain(["jane@example.org"]) is None
