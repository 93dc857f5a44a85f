"""The audit screen: filters, pagination and who may open it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from portal.extensions import db
from portal.services import audit
from portal.services.auth_systems import delete_auth_system
from tests.support.pages import screen_rows


def _event(kind, *, actor=None, system=None, when=None, reference=None):
    event = audit.record_event(kind, actor=actor, system=system, reference=reference)
    if when is not None:
        event.created_at = when
    db.session.commit()
    return event


@pytest.fixture
def app_config(app_config):
    """Keep events forever: these tests date them years back."""
    return {**app_config, "PORTAL_AUDIT_RETENTION_DAYS": 0}


@pytest.fixture
def world(create_user, create_auth_system, manager):
    """Two systems (one then deleted) and two members with sign-ins through them."""
    ann = create_user(email="ann@example.com", first_name="Ann", last_name="Archer")
    bob = create_user(email="bob@example.com", first_name="Bob", last_name="Baker")
    acme = create_auth_system(name="Acme SSO")
    old = create_auth_system(name="Old Portal")
    _event("sign_in", actor=ann, system=acme, when=datetime(2020, 1, 10, 9, tzinfo=UTC))
    _event("sign_in", actor=bob, system=old, when=datetime(2020, 2, 10, 23, 59, tzinfo=UTC))
    _event(
        "sign_in_failed", system=acme, reference="abcd1234", when=datetime(2020, 3, 1, tzinfo=UTC)
    )
    old_id = old.id
    delete_auth_system(old, actor=manager)
    return {"acme": acme.id, "old": old_id}


def test_system_filter_lists_existing_and_deleted_systems(world, audit_page):
    """The System select offers a deleted system by its recorded name, and filters by it."""
    page = audit_page()
    assert f'<option value="{world["old"]}">Old Portal (deleted)</option>' in page
    assert f'<option value="{world["acme"]}">Acme SSO</option>' in page
    rows = screen_rows(audit_page(system=str(world["old"])))
    assert [r[20:].split(" ")[0:2] for r in rows] == [["System", "deleted"], ["SSO", "sign-in"]]
    assert all("Old Portal" in r for r in rows)


def test_user_filter_matches_email_or_name(world, audit_page):
    """Searching "archer" (a last name) or "bob@" (an email) finds that person's events."""
    assert [r for r in screen_rows(audit_page(user="archer"))] == [
        r for r in screen_rows(audit_page(user="ann@example.com"))
    ]
    (ann_row,) = screen_rows(audit_page(user="archer"))
    assert "ann@example.com Acme SSO" in ann_row
    (bob_row,) = screen_rows(audit_page(user="bob@"))
    assert "bob@example.com Old Portal" in bob_row


def test_kind_filter(world, audit_page):
    """Choosing "Failed SSO sign-in" shows only failures, with their reference."""
    (row,) = screen_rows(audit_page(kind="sign_in_failed"))
    assert "Failed SSO sign-in" in row and "abcd1234" in row


def test_date_filter_is_inclusive_in_utc(world, audit_page):
    """From/To are whole UTC days: an event at 23:59 on the To day is included."""
    rows = screen_rows(audit_page(date_from="2020-02-01", date_to="2020-02-10"))
    assert len(rows) == 1 and "bob@example.com" in rows[0]
    assert rows[0].startswith("2020-02-10 23:59:00")
    assert screen_rows(audit_page(date_from="2020-02-11", date_to="2020-02-28")) == []


def test_invalid_date_is_reported_and_ignored(world, audit_page):
    """A date that is not a date shows an error beside the field and does not filter."""
    page = audit_page(date_from="not-a-date", kind="sign_in")
    assert 'id="date_from-error"' in page
    assert len(screen_rows(page)) == 2


def test_newest_first_and_paginated(manager, create_auth_system, audit_page):
    """60 events make two pages of 50, newest first, keeping the filters on the pager."""
    system = create_auth_system(name="Acme SSO")
    for minute in range(60):
        _event(
            "sign_in_failed",
            system=system,
            reference=f"ref{minute:05d}",
            when=datetime(2020, 1, 1, 10, minute, tzinfo=UTC),
        )
    first = audit_page(kind="sign_in_failed")
    rows = screen_rows(first)
    assert len(rows) == 50
    assert "ref00059" in rows[0] and "ref00010" in rows[-1]
    assert "Page 1 of 2" in first
    assert "kind=sign_in_failed" in first.split('rel="next"')[0].rsplit("<a ", 1)[1]
    second = screen_rows(audit_page(kind="sign_in_failed", page=2))
    assert len(second) == 10 and "ref00009" in second[0] and "ref00000" in second[-1]


def test_anonymous_visitors_are_sent_to_sign_in(client, app):
    """The audit screen sends an anonymous visitor to the Sign in page."""
    resp = client.get("/admin/audit")
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]


def test_members_are_refused(client, auth, member):
    """A member gets 403 on the audit screen."""
    auth.login_member()
    assert client.get("/admin/audit").status_code == 403


def test_admin_navigation_links_to_the_audit_log(audit_page):
    """Every admin screen has an "Audit log" link."""
    assert '<a href="/admin/audit">Audit log</a>' in audit_page()
