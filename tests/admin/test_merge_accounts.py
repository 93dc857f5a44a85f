"""Merge accounts (Users): a preview of what moves, then one transaction with one audit event.

Refusals are parametrised and each checks its message and that nothing was written.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import (
    ROLE_MANAGER,
    AuditEvent,
    GroupMembership,
    Identity,
    SSOSession,
    User,
)
from portal.services import audit
from portal.services.account_merge import MergeRefused, merge_accounts, preview_merge
from portal.services.content import ContentData, create_content
from portal.services.groups import assign_manual_group, create_group
from tests.support.accounts import MANAGER_PASSWORD, MEMBER_PASSWORD
from tests.support.rows import count, events

DIGEST = re.compile(r'name="digest" value="([0-9a-f]{64})"')


@pytest.fixture
def system(create_auth_system):
    return create_auth_system(name="Member Center")


@pytest.fixture
def other_system(create_auth_system):
    return create_auth_system(name="Novi")


@pytest.fixture
def accounts(create_user, system, create_team):
    """A kept account (local) and a source account (SSO, groups, team, fuller profile)."""
    kept = create_user(email="jane@example.com", username="jane", first_name="")
    source = create_user(
        email="jane.doe@example.org", username="jdoe", first_name="Jane", last_name="Doe"
    )
    source.password_hash = None
    db.session.add(Identity(user_id=source.id, auth_system_id=system.id, subject="m-42"))
    webinars, board = create_group("Webinars"), create_group("Board")
    db.session.add(
        GroupMembership(user_id=source.id, group_id=webinars.id, auth_system_id=system.id)
    )
    db.session.add(
        SSOSession(id="a" * 64, user_id=source.id, auth_system_id=system.id, subject="m-42")
    )
    team = create_team("Chapter North")
    source.teams.append(team)
    db.session.commit()
    assign_manual_group(source, board)
    assign_manual_group(kept, board)  # the kept account has Board by hand already
    create_content(
        ContentData(
            title="Members-only webinar",
            kind="recording",
            url="https://video.example.com/1",
            visibility="groups",
            group_ids=[webinars.id],
        )
    )
    return kept, source


def preview_page(client, kept: User, source: User):
    resp = client.get(f"/admin/users/{kept.id}/merge/{source.id}")
    return resp.status_code, resp.get_data(as_text=True)


def merge(client, kept: User, source: User, digest: str | None = None):
    if digest is None:
        _, page = preview_page(client, kept, source)
        found = DIGEST.search(page)
        digest = found.group(1) if found else ""
    return client.post(f"/admin/users/{kept.id}/merge/{source.id}", data={"digest": digest})


def snapshot() -> tuple:
    """Return every row a merge could change, to compare before and after a refusal."""
    db.session.expire_all()
    return (
        sorted(
            (u.id, u.email, u.username, u.first_name, u.role)
            for u in db.session.scalars(sa.select(User))
        ),
        sorted(
            (i.user_id, i.auth_system_id, i.subject)
            for i in db.session.scalars(sa.select(Identity))
        ),
        sorted(
            (m.user_id, m.group_id, m.auth_system_id or 0)
            for m in db.session.scalars(sa.select(GroupMembership))
        ),
        count(SSOSession),
        len(events(audit.USER_MERGED)),
    )


# -- finding the other account and the preview ------------------------------------------------


def test_the_users_page_offers_merge_accounts(manager_client, accounts):
    kept, _ = accounts
    page = manager_client.get(f"/admin/users/{kept.id}").get_data(as_text=True)
    assert "Merge accounts…" in page


@pytest.mark.parametrize("query", ["jane.doe@example", "jdoe", "Doe", "{source_id}"])
def test_the_other_account_is_found_by_email_username_name_or_id(manager_client, accounts, query):
    kept, source = accounts
    page = manager_client.get(
        f"/admin/users/{kept.id}/merge", query_string={"q": query.format(source_id=source.id)}
    ).get_data(as_text=True)
    assert f"/admin/users/{kept.id}/merge/{source.id}" in page
    assert f"/admin/users/{kept.id}/merge/{kept.id}" not in page


def test_the_preview_lists_what_moves_and_says_the_source_is_deleted(manager_client, accounts):
    kept, source = accounts
    status, page = preview_page(manager_client, kept, source)
    assert status == 200
    assert "Member Center: provider User ID <code>m-42</code>" in page
    assert "Webinars (Member Center)" in page
    assert "Board (Assigned by a manager)" not in page  # the kept account has it already
    assert "Chapter North" in page
    assert "Members-only webinar" in page
    assert "First Name: Jane" in page and "Last Name: Doe" in page
    assert "Email Address: " not in page  # the kept account's own address is never overwritten
    assert "<strong>deleted</strong>" in page
    assert DIGEST.search(page)
    assert snapshot()[4] == 0


# -- the merge ---------------------------------------------------------------------------------


def test_merge_moves_everything_in_one_transaction_and_deletes_the_source(
    manager_client, accounts, manager, system
):
    kept, source = accounts
    kept_id, source_id = kept.id, source.id

    resp = merge(manager_client, kept, source)

    assert resp.status_code == 302 and resp.headers["Location"] == f"/admin/users/{kept_id}"
    page = manager_client.get(f"/admin/users/{kept_id}").get_data(as_text=True)
    assert "is merged into" in page
    db.session.expire_all()
    assert db.session.get(User, source_id) is None
    kept = db.session.get(User, kept_id)
    assert [(i.auth_system_id, i.subject) for i in kept.identities] == [(system.id, "m-42")]
    rows = sorted(
        (m.group.name, m.auth_system_id is None)
        for m in db.session.scalars(
            sa.select(GroupMembership).where(GroupMembership.user_id == kept_id)
        )
    )
    assert rows == [("Board", True), ("Webinars", False)]
    assert count(GroupMembership) == 2
    assert [t.name for t in kept.teams] == ["Chapter North"]
    assert (kept.email, kept.username, kept.first_name, kept.last_name) == (
        "jane@example.com",
        "jane",
        "Jane",
        "Doe",
    )
    assert count(SSOSession) == 0
    (event,) = events(audit.USER_MERGED)
    assert event.actor_id == manager.id
    assert event.details["kept_id"] == kept_id and event.details["source_id"] == source_id
    assert event.details["counts"] == {
        "identities": 1,
        "memberships": 1,
        "teams": 1,
        "content": 1,
        "fields": 2,
    }
    revoked = events(audit.SESSIONS_REVOKED)
    assert [e.details["user_id"] for e in revoked] == [source_id]


def test_merge_signs_the_source_out_everywhere(app, manager_client, create_user):
    """The source's open session ends at its next request (server-side revocation)."""
    kept = create_user(email="kept@example.com")
    source = create_user(email="source@example.com")
    source_browser = app.test_client()
    source_browser.post("/login", data={"email": "source@example.com", "password": MEMBER_PASSWORD})
    assert source_browser.get("/account").status_code == 200

    merge(manager_client, kept, source)

    assert source_browser.get("/account").status_code == 302


def test_a_source_manager_role_is_not_carried_and_the_page_says_so(manager_client, create_user):
    """A manager merged into a member: the role is not carried, said before the merge."""
    kept = create_user(email="kept@example.com")
    source = create_user(email="boss@example.com", role=ROLE_MANAGER)
    _, page = preview_page(manager_client, kept, source)
    assert "community manager role is not carried" in page

    merge(manager_client, kept, source)

    db.session.expire_all()
    assert db.session.get(User, kept.id).role == "member"


# -- refusals ----------------------------------------------------------------------------------


def _self(accounts, create_user, system, manager):
    kept, _ = accounts
    return kept, kept


def _both_linked(accounts, create_user, system, manager):
    kept, source = accounts
    db.session.add(Identity(user_id=kept.id, auth_system_id=system.id, subject="m-7"))
    db.session.commit()
    return kept, source


def _last_manager(accounts, create_user, system, manager):
    kept, _ = accounts
    return kept, manager


@pytest.mark.parametrize(
    "setup, message",
    [
        (_self, "cannot be merged into itself"),
        (_both_linked, "Both accounts are linked to Member Center"),
        (_last_manager, "last community manager who can sign in with a password"),
    ],
    ids=["into itself", "same system on both", "last local manager"],
)
def test_a_refused_merge_shows_why_and_writes_nothing(
    manager_client, accounts, create_user, system, manager, setup, message
):
    kept, source = setup(accounts, create_user, system, manager)
    status, page = preview_page(manager_client, kept, source)
    assert message in page and 'name="digest"' not in page
    before = snapshot()

    merge(manager_client, kept, source, digest="0" * 64)

    assert message in manager_client.get(f"/admin/users/{kept.id}/merge/{source.id}").get_data(
        as_text=True
    )
    assert snapshot() == before


def test_a_stale_preview_is_refused(manager_client, accounts, other_system):
    """The source gained a binding after the preview: the merge asks for a new preview."""
    kept, source = accounts
    _, page = preview_page(manager_client, kept, source)
    digest = DIGEST.search(page).group(1)
    db.session.add(Identity(user_id=source.id, auth_system_id=other_system.id, subject="n-1"))
    db.session.commit()
    before = snapshot()

    merge(manager_client, kept, source, digest=digest)

    page = manager_client.get(f"/admin/users/{kept.id}/merge/{source.id}").get_data(as_text=True)
    assert "changed since this preview" in page
    assert snapshot() == before


def test_a_manager_cannot_merge_away_their_own_account(app, manager, create_user):
    """Merging the signed-in manager away is refused (they would lock themselves out)."""
    create_user(email="second@example.com", password=MANAGER_PASSWORD, role=ROLE_MANAGER)
    kept = create_user(email="kept@example.com", role=ROLE_MANAGER)
    preview = preview_merge(kept, manager, actor=manager)
    with pytest.raises(MergeRefused, match="signed in with"):
        merge_accounts(kept, manager, actor=manager, expected_digest=preview.digest)
    assert db.session.get(User, manager.id) is not None


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_member_cannot_reach_the_merge(client, auth, member, create_user, method):
    """A member POSTing to the admin merge URL: 403, nothing written."""
    victim = create_user(email="victim@example.com")
    auth.login_member()
    before = snapshot()

    resp = client.open(f"/admin/users/{member.id}/merge/{victim.id}", method=method, data={})

    assert resp.status_code == 403
    assert snapshot() == before
    assert (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.kind == audit.USER_MERGED)
        )
        == 0
    )


def test_anonymous_merge_goes_to_sign_in(client, create_user):
    a, b = create_user(), create_user()
    resp = client.post(f"/admin/users/{a.id}/merge/{b.id}")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert count(User) == 2


def test_the_kept_accounts_empty_email_and_username_are_filled_from_the_source(
    manager_client, create_user, system
):
    """An SSO-only account with no email takes the source's address and username (freed by
    deleting the source in the same transaction); its own name is never overwritten."""
    kept = User(first_name="Janet", last_name="", pending_fields=["email", "username"])
    db.session.add(kept)
    db.session.commit()
    db.session.add(Identity(user_id=kept.id, auth_system_id=system.id, subject="m-1"))
    db.session.commit()
    source = create_user(email="jane@example.com", username="JaneD", first_name="Jane")

    merge(manager_client, kept, source)

    db.session.expire_all()
    kept = db.session.get(User, kept.id)
    assert (kept.email, kept.username, kept.username_key) == ("jane@example.com", "JaneD", "janed")
    assert kept.first_name == "Janet" and kept.pending_fields is None
    assert count(User) == 2  # the kept account and the manager


def test_the_preview_warns_when_the_kept_account_is_disabled(manager_client, create_user):
    kept = create_user(email="kept@example.com")
    source = create_user(email="source@example.com")
    manager_client.post(f"/admin/users/{kept.id}/disable")
    _, page = preview_page(manager_client, kept, source)
    assert "is disabled:</strong>" in page
