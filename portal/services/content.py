"""Content items and what a member may open.

The Library page costs the same whatever the size of the catalogue: for each kind it walks
the ``(kind, title, id)`` index in order and keeps the items the member may open (open to
everyone signed in, or reachable through one of their groups: an index lookup in
``content_groups`` by item and in ``group_memberships`` by user), stopping after one page.
The three kinds are read in one statement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import ContentItem, GroupMembership, MemberGroup, User
from portal.models.content import (
    CONTENT_KINDS,
    VISIBILITIES,
    VISIBILITY_GROUPS,
    VISIBILITY_SIGNED_IN,
    content_groups,
)

#: Items each kind shows on the Library page before "See all".
LIBRARY_PER_KIND = 24
#: Items per page on a kind's own page and on the admin list.
PER_PAGE = 50


class ContentError(ValueError):
    """Bad input for a content operation; the message is for the person who typed it."""


@dataclass
class Page:
    """One page of a longer list."""

    items: list
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """Return how many pages there are (at least one)."""
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        """Tell whether a previous page exists."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """Tell whether a next page exists."""
        return self.page < self.pages


@dataclass
class LibrarySection:
    """The first items of one kind that a member may open, and whether there are more."""

    kind: str
    heading: str
    items: list[ContentItem] = field(default_factory=list)
    has_more: bool = False


# --- who may open what --------------------------------------------------------------------


def visible_item_ids(user: User) -> sa.Subquery:
    """Return a subquery of the ids of the items ``user`` may open (column ``id``).

    Used to count: the ids open to everyone (index on ``visibility``) UNION the ids of the
    member's groups (index on ``content_groups.group_id``).
    """
    if user.is_manager:
        return sa.select(ContentItem.id.label("id")).subquery()
    open_to_all = sa.select(ContentItem.id.label("id")).where(
        ContentItem.visibility == VISIBILITY_SIGNED_IN
    )
    through_groups = (
        sa.select(content_groups.c.content_id.label("id"))
        .join(GroupMembership, GroupMembership.group_id == content_groups.c.group_id)
        .where(GroupMembership.user_id == user.id)
    )
    return sa.union(open_to_all, through_groups).subquery()


def _may_open(user: User) -> sa.ColumnElement[bool]:
    """Return the condition "``user`` may open this ContentItem row" (correlated)."""
    if user.is_manager:
        return sa.true()
    through_groups = (
        sa.select(content_groups.c.content_id)
        .join(GroupMembership, GroupMembership.group_id == content_groups.c.group_id)
        .where(content_groups.c.content_id == ContentItem.id, GroupMembership.user_id == user.id)
        # OFFSET 0 keeps PostgreSQL from turning this into a "hashed SubPlan" that reads
        # every item of the member's groups: per row, two index lookups are far cheaper.
        .offset(0)
        .exists()
    )
    return sa.or_(
        ContentItem.visibility == VISIBILITY_SIGNED_IN,
        sa.and_(ContentItem.visibility == VISIBILITY_GROUPS, through_groups),
    )


def can_open_item(user: User, item: ContentItem) -> bool:
    """Tell whether ``user`` may open ``item`` (managers may open everything)."""
    if not user.is_authenticated:
        return False
    if item.visibility == VISIBILITY_SIGNED_IN or user.is_manager:
        return True
    query = sa.select(ContentItem.id).where(ContentItem.id == item.id, _may_open(user))
    return db.session.scalar(query) is not None


def list_library(user: User, per_kind: int = LIBRARY_PER_KIND) -> list[LibrarySection]:
    """Return, per kind, the first ``per_kind`` items ``user`` may open, and whether more exist.

    One SQL statement, whose cost does not grow with the number of items or groups.
    """
    firsts = [
        sa.select(
            sa.select(ContentItem.id)
            .where(ContentItem.kind == kind, _may_open(user))
            .order_by(ContentItem.title, ContentItem.id)
            .limit(per_kind + 1)
            .subquery()
        )
        for kind in CONTENT_KINDS
    ]
    query = (
        sa.select(ContentItem)
        .where(ContentItem.id.in_(sa.union_all(*firsts)))
        .order_by(ContentItem.kind, ContentItem.title, ContentItem.id)
    )
    sections = {kind: LibrarySection(kind, heading) for kind, heading in CONTENT_KINDS.items()}
    for item in db.session.scalars(query):
        section = sections.get(item.kind)
        if section is None:
            continue
        if len(section.items) < per_kind:
            section.items.append(item)
        else:
            section.has_more = True
    return list(sections.values())


def list_library_kind(user: User, kind: str, page: int = 1, per_page: int = PER_PAGE) -> Page:
    """Return one page of the items of ``kind`` that ``user`` may open."""
    if kind not in CONTENT_KINDS:
        raise ContentError("Unknown kind of content.")
    page = max(1, page)
    visible = visible_item_ids(user)
    base = (
        sa.select(ContentItem)
        .join(visible, visible.c.id == ContentItem.id)
        .where(ContentItem.kind == kind)
    )
    total = db.session.scalar(sa.select(sa.func.count()).select_from(base.subquery()))
    items = list(
        db.session.scalars(
            base.order_by(ContentItem.title, ContentItem.id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    return Page(items, total or 0, page, per_page)


# --- management ---------------------------------------------------------------------------


def get_content(content_id: int) -> ContentItem | None:
    """Return the item with this id, with its groups."""
    return db.session.scalar(
        sa.select(ContentItem)
        .where(ContentItem.id == content_id)
        .options(selectinload(ContentItem.groups))
    )


def list_content(search: str = "", kind: str = "", page: int = 1, per_page: int = PER_PAGE) -> Page:
    """Return one page of every item, filtered by title and kind, by title."""
    page = max(1, page)
    query = sa.select(ContentItem)
    if search.strip():
        pattern = "%" + escape_like(search.strip().lower()) + "%"
        query = query.where(sa.func.lower(ContentItem.title).like(pattern, escape="\\"))
    if kind in CONTENT_KINDS:
        query = query.where(ContentItem.kind == kind)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    items = list(
        db.session.scalars(
            query.options(selectinload(ContentItem.groups))
            .order_by(ContentItem.title, ContentItem.id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    return Page(items, total or 0, page, per_page)


def escape_like(text: str) -> str:
    """Escape the LIKE wildcards in ``text`` (backslash is the escape character)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class ContentData:
    """What a manager fills in for a content item."""

    title: str
    kind: str
    url: str
    description: str = ""
    embed: bool = False
    visibility: str = VISIBILITY_SIGNED_IN
    group_ids: list[int] = field(default_factory=list)


def _check_url(url: str) -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ContentError("The link must be a full http:// or https:// address.")
    return url


def _apply(item: ContentItem, data: ContentData) -> None:
    title = (data.title or "").strip()
    if not title:
        raise ContentError("Title is required.")
    if len(title) > 200:
        raise ContentError("Title must be at most 200 characters.")
    if data.kind not in CONTENT_KINDS:
        raise ContentError("Choose the kind of content.")
    if data.visibility not in VISIBILITIES:
        raise ContentError("Choose who may open the item.")
    groups: list[MemberGroup] = []
    if data.visibility == VISIBILITY_GROUPS:
        ids = sorted(set(data.group_ids))
        groups = list(db.session.scalars(sa.select(MemberGroup).where(MemberGroup.id.in_(ids))))
        if not groups:
            raise ContentError("Choose at least one member group, or open it to everyone.")
        if len(groups) != len(ids):
            raise ContentError("One of the chosen groups does not exist any more.")
    item.title = title
    item.kind = data.kind
    item.url = _check_url(data.url)
    item.description = (data.description or "").strip()
    item.embed = bool(data.embed)
    item.visibility = data.visibility
    item.groups = groups


def create_content(data: ContentData) -> ContentItem:
    """Create a content item."""
    item = ContentItem()
    _apply(item, data)
    db.session.add(item)
    db.session.commit()
    return item


def update_content(item: ContentItem, data: ContentData) -> ContentItem:
    """Change a content item."""
    try:
        _apply(item, data)
    except ContentError:
        db.session.rollback()
        raise
    db.session.commit()
    return item


def delete_content(item: ContentItem) -> None:
    """Delete a content item."""
    db.session.delete(item)
    db.session.commit()
