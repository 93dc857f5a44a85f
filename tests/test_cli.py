"""Command-line operations: create-admin, create-team, ensure-demo."""

import sqlalchemy as sa

from portal.extensions import db
from portal.models import ROLE_MANAGER, Team, User


def test_create_admin_makes_a_community_manager(runner, client, auth):
    """create-admin with --password creates a manager who can sign in."""
    result = runner.invoke(
        args=["create-admin", "--email", "Boss@Example.com", "--password", "long-enough-1"]
    )
    assert result.exit_code == 0, result.output
    assert "Created community manager boss@example.com" in result.output
    user = db.session.scalar(sa.select(User).where(User.email == "boss@example.com"))
    assert user.role == ROLE_MANAGER
    assert auth.login("boss@example.com", "long-enough-1").status_code == 302
    assert client.get("/admin/teams").status_code == 200


def test_create_admin_prompts_for_the_password(runner):
    """Without --password the command prompts (hidden, confirmed)."""
    result = runner.invoke(
        args=["create-admin", "--email", "p@example.com"],
        input="prompted-pass-1\nprompted-pass-1\n",
    )
    assert result.exit_code == 0, result.output
    assert db.session.scalar(sa.select(User).where(User.email == "p@example.com")).check_password(
        "prompted-pass-1"
    )


def test_create_admin_refuses_a_duplicate_and_a_short_password(runner, manager):
    """Bad input gets a clear message and creates nothing."""
    dup = runner.invoke(
        args=["create-admin", "--email", "manager@example.com", "--password", "long-enough-1"]
    )
    assert dup.exit_code != 0
    assert "already exists" in dup.output
    short = runner.invoke(
        args=["create-admin", "--email", "new@example.com", "--password", "short"]
    )
    assert short.exit_code != 0
    assert "at least 8 characters" in short.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_create_team_and_refuse_duplicate(runner):
    """create-team creates a team once; the same name in another case is refused."""
    assert runner.invoke(args=["create-team", "Early Access"]).exit_code == 0
    again = runner.invoke(args=["create-team", "early access"])
    assert again.exit_code != 0
    assert "already exists" in again.output
    assert [t.name for t in db.session.scalars(sa.select(Team))] == ["Early Access"]


def test_ensure_demo_creates_the_demo_manager_once(runner):
    """ensure-demo prints the demo credentials and is idempotent."""
    first = runner.invoke(args=["ensure-demo"])
    second = runner.invoke(args=["ensure-demo"])
    assert first.exit_code == 0 and second.exit_code == 0
    assert "manager@example.com / portal-demo-manager" in first.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_ensure_demo_refuses_production(runner, app):
    """The demo account is never created in production."""
    app.config["PORTAL_ENV"] = "production"
    result = runner.invoke(args=["ensure-demo"])
    assert result.exit_code != 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_purge_attempts_deletes_old_sign_in_attempts_only(runner, client, create_auth_system):
    """`sso purge-attempts` deletes attempts a day old and keeps those still in flight."""
    from datetime import timedelta

    from portal.models import LoginAttempt
    from portal.models.base import utcnow
    from portal.sso.fields import LOGIN_LOCAL_AND_REMOTE

    system = create_auth_system(login_mode=LOGIN_LOCAL_AND_REMOTE)
    for _ in range(2):
        assert client.get(f"/sso/{system.slug}/login").status_code == 302
    old = db.session.scalars(sa.select(LoginAttempt).order_by(LoginAttempt.id)).first()
    old.created_at = utcnow() - timedelta(hours=25)
    db.session.commit()
    result = runner.invoke(args=["sso", "purge-attempts"])
    assert result.exit_code == 0
    assert "Deleted 1 sign-in attempt(s) older than 24 hour(s)." in result.output
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LoginAttempt)) == 1
