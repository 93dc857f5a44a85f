"""Content items (recordings, libraries, subscriptions) and the groups that may open them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import utcnow
from portal.models.group import MemberGroup

KIND_RECORDING = "recording"
KIND_LIBRARY = "library"
KIND_SUBSCRIPTION = "subscription"
#: Kinds in the order the Library shows them, with their headings.
CONTENT_KINDS = {
    KIND_RECORDING: "Event recordings",
    KIND_LIBRARY: "Content libraries",
    KIND_SUBSCRIPTION: "Subscription materials",
}
KIND_LABELS = {
    KIND_RECORDING: "Recording",
    KIND_LIBRARY: "Library",
    KIND_SUBSCRIPTION: "Subscription",
}

#: Every signed-in member may open the item.
VISIBILITY_SIGNED_IN = "signed_in"
#: Only members of the item's groups may open it.
VISIBILITY_GROUPS = "groups"
VISIBILITIES = {
    VISIBILITY_SIGNED_IN: "Everyone signed in",
    VISIBILITY_GROUPS: "Only some member groups",
}

content_groups = sa.Table(
    "content_groups",
    db.metadata,
    sa.Column(
        "content_id", sa.ForeignKey("content_items.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("group_id", sa.ForeignKey("member_groups.id", ondelete="CASCADE"), primary_key=True),
    # "Items of groups G1..Gn" is the Library's lookup: group first, covering the item id.
    sa.Index("ix_content_groups_group_content", "group_id", "content_id"),
)


class ContentItem(db.Model):
    """Something a member can open: an event recording, a content library, a subscription."""

    __tablename__ = "content_items"
    __table_args__ = (
        # The Library walks each kind in title order and stops after a page.
        sa.Index("ix_content_items_kind_title", "kind", "title", "id"),
        # Counting what a member may open starts from the items open to everyone.
        sa.Index("ix_content_items_visibility", "visibility"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    #: One of ``CONTENT_KINDS``.
    kind: Mapped[str] = mapped_column(sa.String(20))
    #: Where the content lives: a link to open, or a page to embed (``embed``).
    url: Mapped[str] = mapped_column(sa.Text)
    #: Show ``url`` in an iframe on the item page instead of linking to it.
    embed: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    #: One of ``VISIBILITIES``.
    visibility: Mapped[str] = mapped_column(sa.String(20), default=VISIBILITY_SIGNED_IN)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    #: Groups that may open the item when ``visibility`` is ``groups``.
    groups: Mapped[list[MemberGroup]] = relationship(
        secondary=content_groups, order_by=MemberGroup.name_key, backref="content_items"
    )

    @property
    def kind_label(self) -> str:
        """Return the kind in the member's words."""
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def visibility_label(self) -> str:
        """Return who may open the item, in the admin's words."""
        return VISIBILITIES.get(self.visibility, self.visibility)

    def __repr__(self) -> str:
        return f"<ContentItem {self.id} {self.title!r}>"
