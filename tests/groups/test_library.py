"""The member's Library, item pages and the 403 page; the statement count at scale."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import ContentItem, GroupMembership, MemberGroup
from portal.models.content import content_groups
from portal.services import group_mapping as group_svc


@pytest.fixture
def catalogue(create_group, create_item):
    """Two groups and three items: one for everyone, one per group."""
    gold = create_group("Gold")
    silver = create_group("Silver")
    items = {
        "open": create_item("Welcome recording", kind="recording"),
        "gold": create_item("Gold library", kind="library", groups=[gold]),
        "silver": create_item("Silver subscription", kind="subscription", groups=[silver]),
    }
    return {"gold": gold, "silver": silver, **{f"item_{k}": v for k, v in items.items()}}


def test_library_requires_sign_in_and_comes_back(client, member):
    """Anonymous visitors go to the login page and return to the Library after signing in."""
    response = client.get("/library")
    assert response.status_code == 302
    assert "/login?next=%2Flibrary" in response.headers["Location"]
    response = client.post(
        "/login",
        data={"email": "member@example.com", "password": "member-password-1", "next": "/library"},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/library")


def test_item_page_requires_sign_in(client, catalogue):
    """An item page sends anonymous visitors to sign in, with the way back."""
    item = catalogue["item_open"]
    response = client.get(f"/library/{item.id}")
    assert response.status_code == 302
    assert f"next=%2Flibrary%2F{item.id}" in response.headers["Location"]


def test_library_lists_what_the_member_may_open_by_kind(
    client, auth, member, catalogue, add_membership
):
    """The Library shows open items and items of the member's groups, under their kind."""
    add_membership(member, catalogue["gold"])
    auth.login_member()
    page = client.get("/library").get_data(as_text=True)
    assert "Welcome recording" in page
    assert "Gold library" in page
    assert "Silver subscription" not in page
    assert page.index("Event recordings") < page.index("Welcome recording")
    assert page.index("Content libraries") < page.index("Gold library")


def test_item_page_shows_an_item_the_member_may_open(
    client, auth, member, catalogue, add_membership
):
    """A member of the item's group sees its page with its link."""
    add_membership(member, catalogue["gold"])
    auth.login_member()
    response = client.get(f"/library/{catalogue['item_gold'].id}")
    assert response.status_code == 200
    assert "https://video.example.com/watch/1" in response.get_data(as_text=True)


def test_item_page_answers_403_with_a_friendly_page(client, auth, member, catalogue):
    """An item of another group answers 403 with a page that says why, and no link to it.

    The page names neither the item nor its groups (issue 12, finding 12).
    """
    auth.login_member()
    response = client.get(f"/library/{catalogue['item_silver'].id}")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "This content is for other members" in page
    assert "Your membership does not include this item" in page
    assert "Silver" not in page
    assert "https://video.example.com/watch/1" not in page


def test_unknown_item_is_404(client, auth, member):
    """A missing item answers 404."""
    auth.login_member()
    assert client.get("/library/9999").status_code == 404


def test_removal_by_sync_shows_on_the_next_page_load(
    client, auth, member, catalogue, create_auth_system
):
    """After a sync drops the group, the next request hides the item and answers 403."""
    system = create_auth_system()
    group_svc.add_rule(system, "groups_contains", "gold", catalogue["gold"].id)
    group_svc.sync_member_groups(member, system, {"groups": ["GOLD"]})
    db.session.commit()
    auth.login_member()
    assert "Gold library" in client.get("/library").get_data(as_text=True)
    group_svc.sync_member_groups(member, system, {"groups": []})
    db.session.commit()
    assert "Gold library" not in client.get("/library").get_data(as_text=True)
    assert client.get(f"/library/{catalogue['item_gold'].id}").status_code == 403


def test_manager_may_open_every_item(client, auth, manager, catalogue):
    """Community managers can open any item (to check what members see)."""
    auth.login_manager()
    assert client.get(f"/library/{catalogue['item_silver'].id}").status_code == 200


def test_kind_page_paginates(client, auth, member, create_item):
    """A kind's own page lists its items a page at a time."""
    for n in range(55):
        create_item(f"Talk {n:02d}", kind="recording")
    auth.login_member()
    library = client.get("/library").get_data(as_text=True)
    assert "See all event recordings" in library
    first = client.get("/library?kind=recording").get_data(as_text=True)
    assert "Talk 00" in first and "Talk 50" not in first and "Page 1 of 2" in first
    second = client.get("/library?kind=recording&page=2").get_data(as_text=True)
    assert "Talk 50" in second and "Talk 00" not in second
    assert client.get("/library?kind=nope").status_code == 404


# --- scale ---------------------------------------------------------------------------------


def populate(n_items: int, n_groups: int, member, member_groups: int = 50, seed: int = 7) -> None:
    """Fill the database with groups and items; put ``member`` in ``member_groups`` groups."""
    rng = random.Random(seed)
    start = db.session.scalar(sa.select(sa.func.count()).select_from(MemberGroup)) or 0
    db.session.execute(
        sa.insert(MemberGroup),
        [
            {"name": f"G{start + i}", "name_key": f"g{start + i}", "description": ""}
            for i in range(n_groups)
        ],
    )
    group_ids = list(db.session.scalars(sa.select(MemberGroup.id)))
    if member_groups:
        db.session.execute(
            sa.insert(GroupMembership),
            [{"user_id": member.id, "group_id": g} for g in rng.sample(group_ids, member_groups)],
        )
    first_new = (db.session.scalar(sa.select(sa.func.max(ContentItem.id))) or 0) + 1
    kinds = ["recording", "library", "subscription"]
    rows = [
        {
            "title": f"Item {i:06d}",
            "kind": kinds[i % 3],
            "url": f"https://video.example.com/{i}",
            "description": "",
            "visibility": "signed_in" if i % 10 == 0 else "groups",
            "embed": False,
        }
        for i in range(n_items)
    ]
    db.session.execute(sa.insert(ContentItem), rows)
    item_ids = list(
        db.session.scalars(
            sa.select(ContentItem.id).where(
                ContentItem.visibility == "groups", ContentItem.id >= first_new
            )
        )
    )
    links = {(i, g) for i in item_ids for g in rng.sample(group_ids, 2)}
    db.session.execute(
        sa.insert(content_groups), [{"content_id": i, "group_id": g} for i, g in links]
    )
    db.session.commit()


def test_library_runs_the_same_number_of_statements_at_1k_and_10k_items(
    client, auth, member, statement_counter
):
    """The Library's SQL statement count does not grow with items or groups (1k vs 10k items)."""
    populate(1_000, 100, member)
    auth.login_member()
    with statement_counter.counting() as small:
        response = client.get("/library")
    assert response.status_code == 200
    small_count = len(small)

    populate(9_000, 900, member, member_groups=0, seed=8)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContentItem)) == 10_000
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MemberGroup)) == 1_000
    with statement_counter.counting() as large:
        response = client.get("/library")
    assert response.status_code == 200
    assert len(large) == small_count
    # User load + the library query: a constant, small number.
    assert small_count <= 3, small
    page = response.get_data(as_text=True)
    assert "See all" in page
