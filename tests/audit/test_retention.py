"""Retention: old events are purged by the command and, at most hourly, on a change."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.config import ConfigError, load_config
from portal.extensions import db
from portal.models.base import utcnow
from portal.services import audit
from portal.services.auth_systems import set_auth_system_enabled
from tests.support.rows import events


def _aged(days: int, reference: str) -> None:
    event = audit.record_event("sign_in_failed", reference=reference)
    event.created_at = utcnow() - timedelta(days=days)
    db.session.commit()


@pytest.fixture
def app_config(app_config):
    """Keep events for 30 days in these tests."""
    return {**app_config, "PORTAL_AUDIT_RETENTION_DAYS": 30}


def test_purge_command_deletes_only_events_past_the_retention(app, runner):
    """`flask audit purge` removes events older than 30 days and keeps the rest."""
    _aged(31, "old00001")
    _aged(29, "new00001")
    result = runner.invoke(args=["audit", "purge"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 audit event(s) older than 30 day(s)." in result.output
    assert [e.reference for e in events()] == ["new00001"]


def test_purge_command_accepts_an_explicit_age(app, runner):
    """`--older-than-days 10` overrides the setting for one run."""
    _aged(11, "old00001")
    _aged(9, "new00001")
    result = runner.invoke(args=["audit", "purge", "--older-than-days", "10"])
    assert "Deleted 1 audit event(s)" in result.output
    assert [e.reference for e in events()] == ["new00001"]


def test_zero_retention_keeps_everything(app, runner):
    """With retention 0 nothing is ever deleted."""
    app.config["PORTAL_AUDIT_RETENTION_DAYS"] = 0
    _aged(5000, "old00001")
    result = runner.invoke(args=["audit", "purge"])
    assert "keep forever" in result.output
    assert len(events()) == 1


def test_a_configuration_change_purges_expired_events_at_most_hourly(
    app, create_auth_system, manager
):
    """The first change of the hour deletes expired events; a later one does not run again."""
    system = create_auth_system(name="Acme SSO")
    _aged(31, "old00001")
    set_auth_system_enabled(system, False, actor=manager)
    assert [e.reference for e in events("sign_in_failed")] == []
    _aged(31, "old00002")
    set_auth_system_enabled(system, True, actor=manager)
    assert [e.reference for e in events("sign_in_failed")] == ["old00002"]
    assert [e.kind for e in events() if e.kind.startswith("system.")] == [
        "system.disabled",
        "system.enabled",
    ]


@pytest.mark.parametrize(
    "kind", [audit.LOCKOUT, audit.TEST_RUN, audit.SESSIONS_REVOKED, audit.SIGN_IN_LOCAL_FAILED]
)
def test_anonymous_and_routine_events_never_start_the_purge(app, kind):
    """Only a manager's change purges: a stranger's lockout or a test run deletes nothing."""
    _aged(31, "old00001")
    audit.record_event(kind)
    db.session.commit()
    assert [e.reference for e in events("sign_in_failed")] == ["old00001"]


def test_retention_setting_is_read_from_the_environment(tmp_path):
    """PORTAL_AUDIT_RETENTION_DAYS defaults to 365 and refuses a negative or non-number."""
    assert load_config(str(tmp_path), {})["PORTAL_AUDIT_RETENTION_DAYS"] == 365
    env = {"PORTAL_AUDIT_RETENTION_DAYS": "0"}
    assert load_config(str(tmp_path), env)["PORTAL_AUDIT_RETENTION_DAYS"] == 0
    for bad in ("-1", "a year"):
        with pytest.raises(ConfigError, match="PORTAL_AUDIT_RETENTION_DAYS"):
            load_config(str(tmp_path), {"PORTAL_AUDIT_RETENTION_DAYS": bad})
