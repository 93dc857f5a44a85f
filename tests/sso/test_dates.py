"""``future(date)``: a Membership Status from a provider that sends only an expiry date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal.sso.engine import map_fields
from portal.sso.paths import parse_date, search_path
from portal.sso.profile_fields import ProfileParam

STATUS = "future(MembershipExpiresDate) && 'Active' || 'Lapsed'"


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (iso(timedelta(days=30)), "Active"),
        (iso(timedelta(days=-1)), "Lapsed"),
        ((datetime.now(UTC) + timedelta(days=2)).date().isoformat(), "Active"),
        # A date without a time holds through that day.
        (datetime.now(UTC).date().isoformat(), "Active"),
        ((datetime.now(UTC) - timedelta(days=1)).date().isoformat(), "Lapsed"),
        ("2999-01-01T00:00:00Z", "Active"),
        ("2999-01-01T00:00:00.1234567+01:00", "Active"),
        ("2001-01-01T00:00:00-0500", "Lapsed"),
        ("/Date(32503680000000-0000)/", "Active"),
        ("/Date(946684800000)/", "Lapsed"),
        # Not a date: null, so the status reads Lapsed and a restriction refuses the member.
        ("2999-02-30", "Lapsed"),
        ("31/12/2999", "Lapsed"),
        ("tomorrow", "Lapsed"),
        ("", "Lapsed"),
        (None, "Lapsed"),
        (32503680000, "Lapsed"),
        (["2999-01-01"], "Lapsed"),
        ("9" * 5000, "Lapsed"),
    ],
)
def test_membership_status_is_active_while_the_expiry_date_is_in_the_future(value, status):
    """The Membership Status parameter's path turns the expiry date into Active or Lapsed."""
    fields = map_fields(
        {"MembershipExpiresDate": value}, {"membership_status": ProfileParam(STATUS)}
    )
    assert fields["membership_status"] == status


@pytest.mark.parametrize("text", ["2999-13-01", "2020-01-01T25:00", "/Date(99999999999999999)/"])
def test_an_impossible_date_is_none_never_an_exception(text):
    """Strict parsing: an impossible date or an out-of-range timestamp is no date."""
    assert parse_date(text) is None
    assert search_path("future(@)", text) is None


def test_a_missing_date_is_null_so_a_path_can_tell_it_apart():
    """future() of a missing member is null, neither true nor false."""
    assert search_path("future(MembershipExpiresDate)", {}) is None
    assert search_path("future(d)", {"d": "2999-01-01"}) is True
    assert search_path("future(d)", {"d": "2000-01-01"}) is False
