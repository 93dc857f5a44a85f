"""Only community managers reach the admin screens."""

from __future__ import annotations

from urllib.parse import quote

import pytest

#: Every admin screen of this area: (method, URL template).
ROUTES = [
    ("GET", "/admin/"),
    ("GET", "/admin/auth-systems"),
    ("GET", "/admin/auth-systems/new"),
    ("POST", "/admin/auth-systems/new"),
    ("GET", "/admin/auth-systems/{system}/edit"),
    ("POST", "/admin/auth-systems/{system}/edit"),
    ("POST", "/admin/auth-systems/{system}/enable"),
    ("POST", "/admin/auth-systems/{system}/disable"),
    ("GET", "/admin/auth-systems/{system}/delete"),
    ("POST", "/admin/auth-systems/{system}/delete"),
    ("GET", "/admin/teams"),
    ("POST", "/admin/teams"),
    ("GET", "/admin/teams/{team}/edit"),
    ("POST", "/admin/teams/{team}/edit"),
    ("POST", "/admin/teams/{team}/delete"),
]


@pytest.fixture
def ids(create_auth_system, create_team) -> dict[str, int]:
    """Create one system and one team for the routes that name them."""
    return {"system": create_auth_system().id, "team": create_team("Staff").id}


def all_admin_routes(app, module: str | None = None) -> list[tuple[str, str]]:
    """Return (method, URL) for every admin rule (of one views module), arguments set to 1."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        if module and app.view_functions[rule.endpoint].__module__ != module:
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "1")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, url))
    return routes


def test_route_list_covers_this_area(app):
    """The table above names every route of portal.admin.views, so each is tested below."""
    known = {(m, u.replace("{system}", "1").replace("{team}", "1")) for m, u in ROUTES}
    assert set(all_admin_routes(app, "portal.admin.views")) == known


def test_anonymous_visitor_is_sent_to_sign_in_from_every_admin_route(app, client, ids):
    """Every admin route, whatever the method, redirects an anonymous visitor to /login?next=."""
    for method, url in all_admin_routes(app):
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert response.headers["Location"] == f"/login?next={quote(url, safe='/')}", (method, url)


def test_member_gets_the_403_page_on_every_admin_route(app, client, auth, member, ids):
    """A signed-in member gets the 403 page from every admin route and changes nothing."""
    auth.login_member()
    for method, url in all_admin_routes(app):
        response = client.open(url, method=method)
        assert response.status_code == 403, (method, url)
        assert "You do not have permission" in response.get_data(as_text=True)
    from portal.services.auth_systems import get_auth_system

    assert get_auth_system(ids["system"]) is not None


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_manager_reaches_every_admin_route(manager_client, ids, method, template):
    """A community manager gets each admin screen (POSTs land on a page that renders)."""
    url = template.format(**ids)
    response = manager_client.open(url, method=method, follow_redirects=True)
    assert response.status_code == 200, (method, url)
