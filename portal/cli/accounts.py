"""Commands for accounts and teams: create-admin, set-password, create-team."""

from __future__ import annotations

import click
from flask import Flask

from portal.models import ROLE_MANAGER


def init_app(app: Flask) -> None:
    """Register the account and team commands."""
    app.cli.add_command(create_admin_command)
    app.cli.add_command(set_password_command)
    app.cli.add_command(create_team_command)


def password_option(help_text: str):
    """Return a --password option that is prompted twice, hidden, when left out."""
    return click.option(
        "--password",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help=help_text,
    )


@click.command("create-admin")
@click.option("--email", required=True, help="Email address of the community manager.")
@password_option("Password (prompted when left out).")
@click.option("--username", default=None, help="Username (defaults to the email's local part).")
def create_admin_command(email: str, password: str, username: str | None) -> None:
    """Create a community manager account."""
    from portal.services.accounts import AccountError, NewUser, create_user

    try:
        user = create_user(
            NewUser(email=email, password=password, username=username, role=ROLE_MANAGER)
        )
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created community manager {user.email}.")


@click.command("set-password")
@click.option("--email", required=True, help="Email address of the account.")
@password_option("New password (prompted when left out).")
def set_password_command(email: str, password: str) -> None:
    """Set a local password (e.g. a manager who lost theirs); the account's sessions end."""
    from portal.services.accounts import get_user_by_email
    from portal.services.users import UserAdminError, change_password

    user = get_user_by_email(email)
    if user is None:
        raise click.ClickException(f"No account has the email address {email}.")
    try:
        change_password(user, password)
    except UserAdminError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Password changed for {user.email}; its sessions have ended.")


@click.command("create-team")
@click.argument("name")
def create_team_command(name: str) -> None:
    """Create a team that new SSO members can be onboarded into."""
    from portal.services.accounts import AccountError, create_team

    try:
        team = create_team(name)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created team {team.name}.")
