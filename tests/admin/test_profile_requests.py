"""The form's Profile Requests 1 to 4: saved in order, checked, audited, exported and imported."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import AuthSystem, ProfileRequestRow
from portal.services.auth_systems import validate_auth_system_data
from portal.services.transfer import export_auth_system, import_auth_system
from tests.support.auth_system_form import SECRET
from tests.support.pages import as_post, errors_beside, form_values
from tests.support.rows import events

NEW = "/admin/auth-systems/new"
API = "https://idp.acme.test"
CHAIN = {
    "profile_url": f"{API}/whoami",
    "profile_headers": "Authorization: Bearer %Token%",
    "profile2_method": "POST",
    "profile2_url": f"{API}/member/%Response1:MemberID%",
    "profile2_headers": "Content-Type: application/json\nX-SS-ID: %Response1:SessionId%",
    "profile2_body": '{"site": "%TokenResponse:site%"}',
    "profile3_method": "GET",
    "profile3_url": f'{API}/groups?PartyId=%Response2:Items."$values"[0].Id%',
}


def saved() -> AuthSystem:
    return db.session.scalars(sa.select(AuthSystem)).one()


def request_rows() -> list[tuple[int, str, str]]:
    rows = db.session.scalars(sa.select(ProfileRequestRow).order_by(ProfileRequestRow.position))
    return [(r.position, r.method, r.url) for r in rows]


def edit(client, system: AuthSystem, **changes: str) -> Any:
    url = f"/admin/auth-systems/{system.id}/edit"
    values = as_post(form_values(client.get(url).get_data(as_text=True)))
    return client.post(url, data={**values, **changes})


def test_the_form_offers_four_profile_requests_with_their_labels(manager_client):
    """Profile Request 1 to 4, each with Method, URL, Headers and Post Body, no script needed."""
    page = manager_client.get(NEW).get_data(as_text=True)

    for n in range(1, 5):
        assert f"<summary>Profile Request {n}</summary>" in page
    for label in ("Profile API Method", "Profile API URL", "Profile API Headers"):
        assert f">{label}</label>" in page
    for label in ("Profile API 2 Method", "Profile API 4 URL", "Profile API 3 Post Body"):
        assert f">{label}</label>" in page
    assert "%Response1:path%" in page and "Response3.Items" in page


def test_a_chain_is_saved_in_order_and_shown_back_on_edit(manager_client, form_data):
    """Three requests become three rows; the edit form shows each where it was typed."""
    response = manager_client.post(NEW, data={**form_data, **CHAIN})

    assert response.status_code == 302, errors_beside(response.get_data(as_text=True), "name")
    assert request_rows() == [
        (1, "GET", CHAIN["profile_url"]),
        (2, "POST", CHAIN["profile2_url"]),
        (3, "GET", CHAIN["profile3_url"]),
    ]
    shown = form_values(
        manager_client.get(f"/admin/auth-systems/{saved().id}/edit").get_data(as_text=True)
    )
    for key, value in CHAIN.items():
        assert shown[key] == value, key
    assert shown["profile4_url"] == ""


def test_emptying_a_request_removes_it(manager_client, form_data):
    """A request whose URL, headers and body are emptied is no longer sent (its row goes)."""
    manager_client.post(NEW, data={**form_data, **CHAIN})

    response = edit(manager_client, saved(), profile3_url="")

    assert response.status_code == 302
    assert [row[0] for row in request_rows()] == [1, 2]


@pytest.mark.parametrize(
    ("changes", "field_id", "message"),
    [
        (
            {"profile2_url": f"{API}/member/%Response2:MemberID%"},
            "profile2_url",
            "%Response2:MemberID% in the Profile API 2 URL reads a response that does not exist "
            "yet: profile request 2 can only use the token response and the response of request 1.",
        ),
        (
            {"profile_headers": "X-Member: %Response1:MemberID%"},
            "profile_headers",
            "profile request 1 can only use the token response (%TokenResponse:...%).",
        ),
        (
            {"token_body": "code=%Code%&m=%Response1:MemberID%"},
            "token_body",
            "%Response1:MemberID% is not available in the Token API Post Body",
        ),
        (
            {"profile3_url": f"{API}/groups?m=%Response2:[%"},
            "profile3_url",
            "%Response2:[% in the Profile API 3 URL: not a valid path",
        ),
        (
            {"profile2_url": "", "profile2_headers": "", "profile2_body": ""},
            "profile3_url",
            "Fill the profile requests in order: the Profile API 3 URL is set but the Profile "
            "API 2 URL is empty.",
        ),
        (
            {"profile3_method": "GET", "profile3_url": "", "profile3_headers": "X-A: 1"},
            "profile3_url",
            "Profile API 3 URL is required for its headers and body.",
        ),
        (
            {"profile2_method": "GET"},
            "profile2_body",
            "The Profile API 2 Post Body is only sent with POST",
        ),
        (
            {"profile3_url": "https://169.254.169.254/latest/meta-data/"},
            "profile3_url",
            "The Profile API 3 URL points to",
        ),
    ],
)
def test_a_chain_that_cannot_run_is_refused_beside_the_request_and_nothing_saved(
    manager_client, form_data, changes, field_id, message
):
    """Each rule names the request it is about; nothing is saved."""
    response = manager_client.post(NEW, data={**form_data, **CHAIN, **changes})

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert message in " ".join(errors_beside(page, field_id)), errors_beside(page, field_id)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuthSystem)) == 0
    assert request_rows() == []


def test_a_method_other_than_get_or_post_is_refused_by_the_service(app, form_data):
    """An import or a crafted request with another method meets the service's own rule."""
    with app.test_request_context():
        errors = validate_auth_system_data({**form_data, **CHAIN, "profile2_method": "PUT"})

    assert errors["profile2_method"] == ["Profile API 2 Method must be GET or POST."]


def test_the_audit_names_the_request_that_changed_without_secret_values(manager_client, form_data):
    """Changing request 2 records "Profile API 2 ..." changes; a literal credential is hidden."""
    manager_client.post(NEW, data={**form_data, **CHAIN})

    response = edit(
        manager_client,
        saved(),
        profile2_url=f"{API}/v2/member/%Response1:MemberID%",
        profile2_headers="Content-Type: application/json\nX-Api-Key: literal-k3y-value",
        client_secret=SECRET,
    )

    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    (event,) = events("system.updated")
    changes = {c["label"]: c for c in event.details["changes"]}
    assert set(changes) == {"Profile API 2 URL", "Profile API 2 Headers"}
    assert changes["Profile API 2 URL"]["new"] == f"{API}/v2/member/%Response1:MemberID%"
    assert "literal-k3y-value" not in str(event.details)
    (created,) = events("system.created")
    created_labels = {c["label"] for c in created.details["changes"]}
    assert {"Profile API 2 Method", "Profile API 3 URL"} <= created_labels
    assert "Profile API 4 Method" not in created_labels  # an unused request is no setting
    assert "X-SS-ID" not in changes["Profile API 2 Headers"]["new"]


def test_export_and_import_carry_the_chain(manager_client, form_data):
    """An exported chain imports as the same requests, in order."""
    manager_client.post(NEW, data={**form_data, **CHAIN})
    document = export_auth_system(saved())
    db.session.delete(saved())
    db.session.commit()

    imported = import_auth_system(document, client_secret=SECRET)

    assert [(r.position, r.url, r.body) for r in imported.profile_requests] == [
        (1, CHAIN["profile_url"], ""),
        (2, CHAIN["profile2_url"], CHAIN["profile2_body"]),
        (3, CHAIN["profile3_url"], ""),
    ]


def test_an_export_from_before_chaining_imports_its_profile_api_as_request_1(
    manager_client, form_data
):
    """An old file has profile_url and profile_headers only: they become request 1."""
    manager_client.post(NEW, data=form_data)
    document = export_auth_system(saved())
    old = {
        k: v
        for k, v in document["auth_system"].items()
        if not (k.startswith("profile") and k not in ("profile_url", "profile_headers"))
        or k == "profile_edit_url"
    }
    document["auth_system"] = old
    db.session.delete(saved())
    db.session.commit()

    imported = import_auth_system(document, client_secret=SECRET)

    assert [(r.position, r.method, r.url, r.headers) for r in imported.profile_requests] == [
        (1, "GET", form_data["profile_url"], form_data["profile_headers"])
    ]
