"""Access rules on any claim, applied by the real SSO flow: Allowed Email Domains, Required
Claim and Existing Accounts Only (each written as the attack or the refusal it stops)."""

from __future__ import annotations

import pytest

from portal.auth import sessions
from portal.extensions import db
from portal.models import GroupMembership, User
from portal.services.group_mapping import save_mapping_settings
from tests.support.failures import REFERENCE
from tests.support.providers import reconfigure
from tests.support.rows import count, users_and_identities


def _rules(system, **rules) -> None:
    save_mapping_settings(
        system,
        default_group_id=None,
        restrict_sign_in=False,
        allowed_statuses="",
        deny_message=rules.pop("deny_message", ""),
        group_object_key="",
        **rules,
    )


def _refused(resp, message: str, caplog) -> None:
    page = resp.get_data(as_text=True)
    assert resp.status_code == 403, resp.status_code
    assert message in page
    reference = REFERENCE.search(page).group(1)
    assert any(f"ref={reference}" in r.getMessage() for r in caplog.records)


# --- Allowed Email Domains --------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "jane@evil-example.org",
        "jane@example.org.evil.com",
        "jane@mail.example.org",
        '"jane@example.org"@attacker.test',
        "jane@example.org@attacker.test",
        "jane.example.org",
        "",
    ],
)
def test_a_look_alike_email_domain_is_refused_and_nothing_is_written(provider, sso, caplog, email):
    """Only example.org may sign in: look-alikes, subdomains and tricks are refused, no row."""
    _rules(
        provider.system,
        allowed_email_domains="example.org",
        deny_message="Only example.org staff may sign in here.",
    )
    provider.idp.members.update("jdoe", email=email)

    resp = sso.sign_in(provider)

    _refused(resp, "Only example.org staff may sign in here.", caplog)
    assert users_and_identities() == (0, 0)
    assert count(GroupMembership) == 0


@pytest.mark.parametrize("email", ["jane.doe@example.org", "Jane.Doe@EXAMPLE.ORG"])
def test_an_allowed_email_domain_signs_in_whatever_its_case(provider, sso, email):
    """example.org listed (typed as @Example.org): Jane's address passes, in any case."""
    _rules(provider.system, allowed_email_domains="@Example.org\nexample.net")
    provider.idp.members.update("jdoe", email=email)

    resp = sso.sign_in(provider)

    assert resp.status_code == 302, resp.status_code
    assert users_and_identities() == (1, 1)


# --- Required Claim ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [False, None, "", [], {}])
def test_a_required_claim_that_is_false_refuses_with_the_managers_message(oidc, sso, caplog, value):
    """Required Claim board.voting: a member whose profile says otherwise is refused."""
    _rules(
        oidc.system,
        required_claim="board.voting",
        required_claim_message="Only voting members may join the board room.",
        deny_message="Generic refusal.",
    )
    oidc.idp.members.update("jdoe", board={"voting": value})

    resp = sso.sign_in(oidc)

    _refused(resp, "Only voting members may join the board room.", caplog)
    assert "Generic refusal." not in resp.get_data(as_text=True)
    assert users_and_identities() == (0, 0)


def test_a_required_claim_missing_from_the_profile_refuses(oidc, sso, caplog):
    """The provider leaves the claim out entirely: refused, never let through by default."""
    _rules(oidc.system, required_claim="contains(roles, 'voting')")

    resp = sso.sign_in(oidc)

    _refused(resp, "does not allow you to sign in", caplog)
    assert users_and_identities() == (0, 0)


@pytest.mark.parametrize("value", [True, 0, "yes", ["voting"]])
def test_a_true_required_claim_signs_in(oidc, sso, value):
    """JMESPath truth: true, 0, a text and a non-empty list all pass."""
    _rules(oidc.system, required_claim="board.voting")
    oidc.idp.members.update("jdoe", board={"voting": value})

    resp = sso.sign_in(oidc)

    assert resp.status_code == 302, resp.status_code
    assert users_and_identities() == (1, 1)


# --- Existing Accounts Only -------------------------------------------------------------------


def test_existing_accounts_only_refuses_a_newcomer_and_writes_nothing(provider, sso, caplog):
    """A person seen for the first time gets the manager's message and no account."""
    _rules(
        provider.system,
        existing_accounts_only=True,
        existing_accounts_message="Ask the office for an account first.",
    )

    resp = sso.sign_in(provider)

    _refused(resp, "Ask the office for an account first.", caplog)
    assert users_and_identities() == (0, 0)


def test_existing_accounts_only_lets_a_linked_member_in(provider, sso, client):
    """Jane's account was linked before the rule: she keeps signing in."""
    assert sso.sign_in(provider).status_code == 302
    client.get("/logout")
    _rules(provider.system, existing_accounts_only=True)

    resp = sso.sign_in(provider)

    assert resp.status_code == 302, resp.status_code
    assert users_and_identities() == (1, 1)


def test_existing_accounts_only_still_connects_an_existing_local_account(provider, sso):
    """A member account made by the office (no password) is connected: it is not new."""
    provider.system.param("email").can_upgrade = True
    provider.system.trusts_email = True
    user = User(email="jane.doe@example.org", username="jane", username_key="jane")
    db.session.add(user)
    db.session.commit()
    _rules(provider.system, existing_accounts_only=True)

    resp = sso.sign_in(provider)

    assert resp.status_code == 302, resp.status_code
    assert users_and_identities() == (1, 1)


# --- at the membership re-check ---------------------------------------------------------------


def test_the_recheck_signs_out_a_member_the_required_claim_now_refuses(
    oidc, sso, client, monkeypatch
):
    """Re-check every 15 minutes: the provider drops Jane's voting right; her first request
    after the interval signs her out with the Required Claim's message and a reference."""
    now = {"t": 1_800_000_000.0}
    monkeypatch.setattr(sessions, "now", lambda: now["t"])
    system = reconfigure(oidc, recheck_minutes=15)
    _rules(system, required_claim="board.voting", required_claim_message="Board members only.")
    oidc.idp.members.update("jdoe", board={"voting": True})
    assert sso.sign_in(oidc).status_code == 302
    oidc.idp.members.update("jdoe", board={"voting": False})
    now["t"] += 16 * 60

    resp = client.get("/library")

    assert resp.status_code == 302
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Board members only." in page
    assert "Reference:" in page
    assert client.get("/library").status_code == 302  # signed out


# --- Test this configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "reason", "message"),
    [
        (
            {"allowed_email_domains": "example.net", "deny_message": "Staff only."},
            "email address domain is not an Allowed Email Domain",
            "Staff only.",
        ),
        (
            {"required_claim": "board.voting", "required_claim_message": "Board only."},
            "Required Claim is not met",
            "Board only.",
        ),
        (
            {"existing_accounts_only": True, "existing_accounts_message": "Ask the office."},
            "Existing Accounts Only",
            "Ask the office.",
        ),
    ],
)
def test_the_test_screen_says_which_access_rule_would_refuse(
    provider, manager_client, rules, reason, message
):
    """The trace names the rule and shows the member's message; nobody is signed in."""
    from tests.auth.test_test_screen import run_test

    _rules(provider.system, **rules)

    _url, page = run_test(manager_client, provider)

    assert reason in page
    assert message in page
    assert "The sign-in works" not in page
    assert users_and_identities() == (1, 0)  # only the manager
