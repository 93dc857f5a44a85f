"""The command that re-encrypts stored secrets: rotate-secrets."""

from __future__ import annotations

import click
from flask import Flask


def init_app(app: Flask) -> None:
    """Register the rotate-secrets command."""
    app.cli.add_command(rotate_secrets_command)


@click.command("rotate-secrets")
def rotate_secrets_command() -> None:
    """Re-encrypt every stored secret under the newest PORTAL_ENCRYPTION_KEYS key."""
    from portal.services.auth_systems import rotate_all_secrets
    from portal.services.secrets import SecretUnreadable

    try:
        count = rotate_all_secrets()
    except SecretUnreadable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Re-encrypted {count} secret(s) under the newest key.")
