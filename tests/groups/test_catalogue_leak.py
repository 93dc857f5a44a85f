"""No catalogue leak: walking item ids as a member shows no title nor group of gated items."""

from __future__ import annotations

from portal.extensions import db
from portal.models import ContentItem


def test_walking_item_ids_shows_no_title_nor_group(client, auth, member, create_group, create_item):
    """Attack: a member without the groups opens every id in turn; the 403 pages name nothing."""
    secret_groups = [create_group("Board Members"), create_group("Platinum Sponsors")]
    gated = [
        create_item("Merger negotiations 2027", kind="recording", groups=secret_groups[:1]),
        create_item("Sponsor price list", kind="library", groups=secret_groups[1:]),
        create_item("Both-groups strategy", kind="subscription", groups=secret_groups),
    ]
    open_item = create_item("Welcome recording")
    auth.login_member()
    last_id = max(item.id for item in [*gated, open_item])
    forbidden = 0
    for item_id in range(1, last_id + 3):
        response = client.get(f"/library/{item_id}")
        page = response.get_data(as_text=True)
        if response.status_code == 403:
            forbidden += 1
            assert "This content is for other members" in page
        for item in gated:
            assert item.title not in page
        for group in secret_groups:
            assert group.name not in page
    assert forbidden == len(gated)
    # The member still sees the open item, and the gated items still exist.
    assert client.get(f"/library/{open_item.id}").status_code == 200
    assert db.session.get(ContentItem, gated[0].id) is not None
