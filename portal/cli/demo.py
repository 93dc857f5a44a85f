"""The command that sets up the demo used by `make run`: ensure-demo."""

from __future__ import annotations

import click
from flask import Flask

from portal.models import ROLE_MANAGER


def init_app(app: Flask) -> None:
    """Register the ensure-demo command."""
    app.cli.add_command(ensure_demo_command)


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
