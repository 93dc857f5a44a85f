"""Command-line operations on the audit log: `flask --app portal audit <command>`."""

from __future__ import annotations

import click
from flask import Flask


def init_app(app: Flask) -> None:
    """Register the audit command group."""
    app.cli.add_command(audit_group)


@click.group("audit")
def audit_group() -> None:
    """Manage the audit log."""


@audit_group.command("purge")
@click.option(
    "--older-than-days",
    type=click.IntRange(min=0),
    default=None,
    help="Delete events older than this many days (default: PORTAL_AUDIT_RETENTION_DAYS).",
)
def purge_command(older_than_days: int | None) -> None:
    """Delete audit events older than the retention period (run it daily from cron)."""
    from portal.services.audit import purge_audit_events, retention_days

    days = retention_days() if older_than_days is None else older_than_days
    if days <= 0:
        click.echo("Retention is 0 (keep forever): nothing deleted.")
        return
    count = purge_audit_events(days)
    click.echo(f"Deleted {count} audit event(s) older than {days} day(s).")
