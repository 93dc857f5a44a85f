"""`flask --app portal sso export|import`: move one system's configuration between sites."""

from __future__ import annotations

import os

import click
from flask import Flask
from flask.cli import AppGroup


def init_app(app: Flask) -> None:
    """Register the sso command group."""
    app.cli.add_command(sso_group)


@click.group("sso", cls=AppGroup)
def sso_group() -> None:
    """Export and import authentication systems."""


@sso_group.command("export")
@click.argument("name")
@click.option(
    "--include-secret",
    is_flag=True,
    help="Add the client secret, encrypted with this site's PORTAL_ENCRYPTION_KEYS.",
)
@click.option(
    "-o", "--output", "output", default=None, help="Write to this file (default: stdout)."
)
def export_command(name: str, include_secret: bool, output: str | None) -> None:
    """Print the configuration of the system NAME (or Redirect URL identifier) as JSON."""
    import sqlalchemy as sa

    from portal.extensions import db
    from portal.models import AuthSystem
    from portal.services.secrets import SecretUnreadable
    from portal.services.transfer import dump_export, export_auth_system

    system = db.session.scalar(
        sa.select(AuthSystem).where(
            sa.or_(AuthSystem.name_key == name.strip().lower(), AuthSystem.slug == name.strip())
        )
    )
    if system is None:
        raise click.ClickException(f"No authentication system is named {name}.")
    try:
        text = dump_export(export_auth_system(system, include_secret=include_secret))
    except SecretUnreadable as exc:
        raise click.ClickException(str(exc)) from exc
    if output is None:
        click.echo(text, nl=False)
        return
    # Owner-only, as the file may carry the (encrypted) secret.
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"Exported {system.name} to {output}.", err=True)


@sso_group.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--replace", is_flag=True, help="Overwrite the existing system with the same Name.")
@click.option(
    "--client-secret-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Read the Client Secret from this file (else from the export, else a hidden prompt).",
)
def import_command(file, replace: bool, client_secret_file: str | None) -> None:
    """Create (or with --replace overwrite) a system from an exported FILE ("-": stdin)."""
    from portal.services.transfer import (
        ImportInvalid,
        import_auth_system,
        needs_client_secret,
        parse_export,
    )

    try:
        doc = parse_export(file.read())
        secret = ""
        if client_secret_file:
            with open(client_secret_file, encoding="utf-8") as handle:
                secret = handle.read().strip()
        elif needs_client_secret(doc, replace=replace):
            secret = click.prompt("Client Secret", hide_input=True, err=True)
        system = import_auth_system(doc, client_secret=secret, replace=replace)
    except ImportInvalid as exc:
        for problem in exc.problems:
            click.echo(f"Error: {problem}", err=True)
        click.echo("Nothing was imported.", err=True)
        click.get_current_context().exit(1)
    click.echo(f"Imported authentication system {system.name}.")


@sso_group.command("purge-attempts")
@click.option(
    "--older-than-hours",
    type=click.IntRange(min=1),
    default=24,
    show_default=True,
    help="Delete sign-in attempts (their state, nonce and verifier) older than this.",
)
def purge_attempts_command(older_than_hours: int) -> None:
    """Delete old SSO sign-in attempts (each process also does it every few minutes)."""
    from datetime import timedelta

    from portal.services.login_attempts import purge_expired_attempts

    count = purge_expired_attempts(older_than=timedelta(hours=older_than_hours))
    click.echo(f"Deleted {count} sign-in attempt(s) older than {older_than_hours} hour(s).")
