"""Command-line operations: `flask --app portal <command>`."""

from __future__ import annotations

import click
from flask import Flask

from portal.audit_cli import audit_group
from portal.models import ROLE_MANAGER
from portal.transfer_cli import sso_group


def init_app(app: Flask) -> None:
    """Register the commands."""
    app.cli.add_command(create_admin_command)
    app.cli.add_command(set_password_command)
    app.cli.add_command(create_team_command)
    app.cli.add_command(rotate_secrets_command)
    app.cli.add_command(ensure_demo_command)
    app.cli.add_command(audit_group)
    app.cli.add_command(sso_group)


@click.command("create-admin")
@click.option("--email", required=True, help="Email address of the community manager.")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Password (prompted when left out).",
)
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
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="New password (prompted when left out).",
)
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


@click.command("ensure-demo")
@click.option("--email", default="manager@example.com", show_default=True)
@click.option("--password", default="portal-demo-manager", show_default=True)
@click.option(
    "--with-idp",
    "idp_url",
    default=None,
    help="Also configure the demo identity provider served at this loopback URL.",
)
def ensure_demo_command(email: str, password: str, idp_url: str | None) -> None:
    """Create the demo community manager (and demo provider) used by `make run`, once."""
    from flask import current_app

    from portal.services.accounts import NewUser, create_user, get_user_by_email

    if current_app.config["PORTAL_ENV"] == "production":
        raise click.ClickException("The demo account is never created in production.")
    if get_user_by_email(email) is None:
        create_user(NewUser(email=email, password=password, username="manager", role=ROLE_MANAGER))
    click.echo("")
    click.echo("  Portal is starting on http://127.0.0.1:5000")
    click.echo(f"  Demo community manager: {email} / {password}")
    if idp_url:
        from portal.services.auth_systems import AuthSystemInvalid
        from portal.services.demo import ensure_demo_system, read_or_create_demo_secret

        secret_file = read_or_create_demo_secret(current_app.instance_path)
        try:
            system = ensure_demo_system(idp_url, secret_file.read_text().strip())
        except AuthSystemInvalid as exc:
            problems = "; ".join(f"{k}: {m}" for k, ms in exc.errors.items() for m in ms)
            message = f"The demo provider could not be configured: {problems}"
            raise click.ClickException(message) from exc
        click.echo(f"  Demo identity provider: {idp_url} ({system.login_mode_label})")
        click.echo("  Demo members: jdoe / demo (with groups), mo / demo (no last name)")
    click.echo("")
