"""Account resolution on hand-made SSO results: bind, upgrade, conflict, create, races."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem, Identity, User
from portal.services import account_resolution
from portal.services.account_resolution import resolve_account
from portal.services.settings_snapshot import settings_of
from portal.sso.engine import SSOResult
from portal.sso.errors import AccountConflict, EmailNotVerified
from tests.support.rows import users_and_identities


def result(subject: str = "sub-1", profile: dict | None = None, **fields: Any) -> SSOResult:
    """Return an SSOResult as the engine would give it."""
    values = {
        "user_id": subject,
        "username": "jdoe",
        "email": "Jane@Example.org",
        "first_name": "Jane",
        "last_name": "Doe",
        "membership_status": "Active",
        "membership_type": "Pro",
        "groups": [],
    }
    values.update(fields)
    return SSOResult(
        subject=subject,
        fields=values,
        missing_required=[],
        token_response={},
        profile=profile or {},
    )


@pytest.fixture
def system(create_auth_system):
    return create_auth_system(
        params={
            "user_id": {"path": "sub"},
            "username": {"path": "u"},
            "email": {"path": "email"},
            "first_name": {"path": "f", "must_supply": True},
            "last_name": {"path": "l"},
            "membership_status": {"path": "ms"},
        }
    )


def set_option(system: AuthSystem, field: str, **opts) -> None:
    row = system.param(field)
    for key, value in opts.items():
        setattr(row, key, value)
    db.session.commit()


def test_new_user_is_created_with_locked_fields_and_lower_cased_email(system):
    """A new person: a user bound to the system; must-supply fields supplied are locked."""
    user, created = resolve_account(system, result())
    assert created
    assert user.email == "jane@example.org" and user.username_key == "jdoe"
    identity = db.session.scalar(sa.select(Identity))
    assert identity.subject == "sub-1" and identity.locked_fields == ["first_name"]
    assert user.membership_status == "Active"
    assert user.membership_type is None  # not mapped by this system


def test_missing_optional_fields_become_pending(system):
    """Fields the provider did not supply are pending for *Complete your profile*."""
    user, _ = resolve_account(system, result(username=None, last_name=None))
    assert sorted(user.pending_fields) == ["last_name", "username"]


def test_known_binding_signs_in_the_same_user(system):
    """The same subject twice: one user, one identity, created only the first time."""
    first, _ = resolve_account(system, result())
    again, created = resolve_account(system, result(first_name="Janet", last_name="Smith"))
    assert again.id == first.id and not created
    assert users_and_identities() == (1, 1)
    assert again.first_name == "Janet" and again.last_name == "Doe"


def test_conflict_leaves_everything_unchanged(system, create_user):
    """An email match without upgrade raises AccountConflict naming Email Address."""
    create_user(email="jane@example.org", username="other")
    with pytest.raises(AccountConflict) as info:
        resolve_account(system, result())
    assert info.value.field == "email" and "Email Address" in info.value.user_message
    assert users_and_identities() == (1, 0)


def test_upgrade_refused_for_unverified_email(system, create_user):
    """email_verified false (profile or id_token claims) blocks an upgrade by email."""
    create_user(email="jane@example.org", username="jdoe")
    set_option(system, "email", can_upgrade=True)
    with pytest.raises(EmailNotVerified):
        resolve_account(system, result(profile={"email_verified": False}))
    with pytest.raises(EmailNotVerified):
        resolve_account(system, result(profile={"email_verified": "false"}))
    assert users_and_identities() == (1, 0)


def test_upgrade_with_verified_email(system, create_user):
    """email_verified true: a local account without a password is bound."""
    local = create_user(email="jane@example.org", username="jdoe")
    local.password_hash = None
    set_option(system, "email", can_upgrade=True)
    user, created = resolve_account(system, result(profile={"email_verified": True}))
    assert user.id == local.id and not created


def test_account_already_bound_to_another_subject_is_a_conflict(system, create_user):
    """A local account already bound to this system under another User ID is not re-bound."""
    set_option(system, "email", can_upgrade=True)
    resolve_account(system, result(subject="first"))
    with pytest.raises(AccountConflict):
        resolve_account(system, result(subject="second"))
    assert users_and_identities() == (1, 1)


def test_new_user_joins_the_onboarding_team(system, create_team):
    """A user created through the system joins its Onboarding Team."""
    team = create_team("Welcome")
    system.onboarding_team_id = team.id
    db.session.commit()
    user, _ = resolve_account(system, result())
    assert [t.name for t in user.teams] == ["Welcome"]


def test_refresh_that_collides_with_another_account_is_a_conflict(system, create_user):
    """A locked email refreshed to one another account holds: conflict, nothing changed."""
    set_option(system, "email", must_supply=True)
    user, _ = resolve_account(system, result())
    create_user(email="taken@example.org", username="taken")
    with pytest.raises(AccountConflict):
        resolve_account(system, result(email="taken@example.org"))
    db.session.expire_all()
    assert db.session.get(User, user.id).email == "jane@example.org"


@pytest.mark.parametrize("begun", [True, False], ids=["in-a-transaction", "nothing-begun"])
def test_simultaneous_first_logins_create_one_account(app, system, monkeypatch, begun):
    """Two first logins of the same person at once: one user, one identity, both signed in.

    As the callback runs it (nothing begun in the session: on PostgreSQL the account, its
    binding and its audit event are one statement) and after a read in the session.
    """
    system_id = system.id
    barrier = threading.Barrier(2, timeout=10)
    local = threading.local()

    plan_account = account_resolution.plan_account

    def plan_then_wait(*args: Any, **kwargs: Any) -> Any:
        # Hold each thread after its lookups until the other has looked up too.
        plan = plan_account(*args, **kwargs)
        if not getattr(local, "waited", False):
            local.waited = True
            barrier.wait()
        return plan

    monkeypatch.setattr(account_resolution, "plan_account", plan_then_wait)
    outcomes: list[Any] = []

    def sign_in() -> None:
        with app.app_context():
            try:
                snapshot = settings_of(db.session.get(AuthSystem, system_id))
                if not begun:
                    db.session.commit()
                user, created = resolve_account(snapshot, result())
                outcomes.append((user.id, created))
            except Exception as exc:  # noqa: BLE001
                outcomes.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=sign_in) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(isinstance(o, tuple) for o in outcomes), outcomes
    assert len({user_id for user_id, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False, True]
    assert users_and_identities() == (1, 1)
