"""The `make run` demo: the demo manager and a working demo identity provider."""

from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from portal.devidp import OIDCProvider, demo_members
from portal.extensions import db
from portal.models import AuthSystem, ContentItem, MemberGroup, User
from portal.services.auth_systems import read_client_secret
from portal.services.demo import DEMO_CLIENT_ID, read_or_create_demo_secret
from portal.sso.idtoken import get_jwks_cache


def test_demo_secret_is_random_private_and_stable(tmp_path):
    """The demo client secret is generated once, readable only by its owner, then reused."""
    first = read_or_create_demo_secret(str(tmp_path))
    value = first.read_text()
    assert len(value) >= 24
    assert first.stat().st_mode & 0o077 == 0
    assert read_or_create_demo_secret(str(tmp_path)).read_text() == value


def test_ensure_demo_with_idp_configures_a_working_provider(app, runner, client):
    """ensure-demo --with-idp saves a Local and Remote Logins system a demo member signs in with."""
    secret = read_or_create_demo_secret(app.instance_path).read_text()
    idp = OIDCProvider(
        client_id=DEMO_CLIENT_ID,
        client_secret=secret,
        redirect_uris=["http://localhost/sso/demo-identity-provider/callback"],
        members=demo_members(),
    )
    get_jwks_cache().clear()
    with idp:
        result = runner.invoke(args=["ensure-demo", "--with-idp", idp.url])
        assert result.exit_code == 0, result.output
        assert secret not in result.output
        again = runner.invoke(args=["ensure-demo", "--with-idp", idp.url])
        assert again.exit_code == 0, again.output
        systems = list(db.session.scalars(sa.select(AuthSystem)))
        assert [s.name for s in systems] == ["Demo Identity Provider"]
        assert systems[0].login_mode_label == "Local and Remote Logins"
        assert read_client_secret(systems[0]) == secret

        login_page = client.get("/login").get_data(as_text=True)
        assert "Sign in with the demo provider" in login_page
        start = client.get("/sso/demo-identity-provider/login")
        assert start.status_code == 302
        back = idp.authorize_redirect(start.headers["Location"], "jdoe")
        parts = urlsplit(back)
        callback = client.get(parts.path, query_string=parse_qs(parts.query))
        assert callback.status_code == 302, callback.get_data(as_text=True)
    user = db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))
    assert user is not None
    assert "Jane" in client.get("/account").get_data(as_text=True)
    # The demo groups gate demo content: Jane's WEBINARS and LIBRARY open both gated items.
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MemberGroup)) == 2
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContentItem)) == 3
    library = client.get("/library").get_data(as_text=True)
    for title in ("Welcome to the community", "Annual conference keynote", "Research library"):
        assert title in library
