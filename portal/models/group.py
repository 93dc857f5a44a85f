"""Member groups, who is in them and why, and how an authentication system maps onto them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from portal.extensions import db
from portal.models.auth_system import AuthSystem
from portal.models.base import utcnow
from portal.models.user import User

#: "Groups contains V -> G": one value per rule.
RULE_GROUPS_CONTAINS = "groups_contains"
#: "Membership Status is one of [..] -> G".
RULE_STATUS_IN = "status_in"
#: "Membership Type is one of [..] -> G".
RULE_TYPE_IN = "type_in"
#: "Groups contains V -> community manager": one value per rule, no member group.
RULE_GROUPS_MANAGER = "groups_contains_manager"
RULE_KINDS = {
    RULE_GROUPS_CONTAINS: "Groups contains",
    RULE_STATUS_IN: "Membership Status is one of",
    RULE_TYPE_IN: "Membership Type is one of",
    RULE_GROUPS_MANAGER: "Groups contains V → community manager",
}
#: Kinds that take one value per rule (several values typed at once make several rules).
SINGLE_VALUE_KINDS = frozenset({RULE_GROUPS_CONTAINS, RULE_GROUPS_MANAGER})
#: Kinds that give the community manager role instead of a member group.
ROLE_KINDS = frozenset({RULE_GROUPS_MANAGER})


class MemberGroup(db.Model):
    """An internal group of members; content names the groups that may open it."""

    __tablename__ = "member_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    #: Lower-cased name; unique so names differ by more than case.
    name_key: Mapped[str] = mapped_column(sa.String(120), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    memberships: Mapped[list[GroupMembership]] = relationship(
        back_populates="group", cascade="all, delete-orphan"
    )
    rules: Mapped[list[GroupRule]] = relationship(
        back_populates="group", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<MemberGroup {self.name!r}>"


class GroupMembership(db.Model):
    """One reason a user is in a group: an authentication system said so, or a manager did.

    A user may be in the same group twice, once per source; a sync only touches the rows
    of its own system, so a manual row keeps the user in the group whatever the IdP says.
    """

    __tablename__ = "group_memberships"
    __table_args__ = (
        # NULLs are distinct, so this dedupes the SSO rows; the service dedupes manual rows.
        # Its index (user_id first) also serves "the groups of user U" in the Library.
        sa.UniqueConstraint(
            "user_id", "group_id", "auth_system_id", name="uq_group_memberships_source"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("member_groups.id", ondelete="CASCADE"), index=True
    )
    #: The system whose mapping rules put the user here; ``None`` when a manager assigned it.
    auth_system_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    group: Mapped[MemberGroup] = relationship(back_populates="memberships")
    # ORM cascades (not only ON DELETE) so SQLite, which runs without FK enforcement, agrees.
    user: Mapped[User] = relationship(
        backref=backref("group_memberships", cascade="all, delete-orphan")
    )
    auth_system: Mapped[AuthSystem | None] = relationship(
        backref=backref("group_memberships", cascade="all, delete-orphan")
    )

    @property
    def is_manual(self) -> bool:
        """Tell whether a manager assigned this membership by hand."""
        return self.auth_system_id is None

    @property
    def source_label(self) -> str:
        """Return where this membership came from, in the admin's words."""
        if self.auth_system_id is None:
            return "Assigned by a manager"
        return self.auth_system.name if self.auth_system else f"system {self.auth_system_id}"


class GroupRule(db.Model):
    """One mapping rule of an authentication system: a condition on the profile -> a group."""

    __tablename__ = "group_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    auth_system_id: Mapped[int] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE"), index=True
    )
    #: One of ``RULE_KINDS``.
    kind: Mapped[str] = mapped_column(sa.String(30))
    #: Normalized (trimmed, case-folded) values the rule matches; one for ``groups_contains``.
    values: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    #: The values as the manager typed them, for display.
    values_display: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    #: The group the rule gives; ``None`` for a rule that gives the manager role (``ROLE_KINDS``).
    group_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("member_groups.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    group: Mapped[MemberGroup | None] = relationship(back_populates="rules")
    auth_system: Mapped[AuthSystem] = relationship(
        backref=backref("group_rules", cascade="all, delete-orphan", order_by="GroupRule.id")
    )

    @property
    def kind_label(self) -> str:
        """Return the rule's condition in the admin's words."""
        return RULE_KINDS.get(self.kind, self.kind)

    @property
    def target_label(self) -> str:
        """Return what the rule gives, in the admin's words."""
        if self.kind in ROLE_KINDS:
            return "Community manager"
        return self.group.name if self.group else ""


class GroupMappingSettings(db.Model):
    """Per-system options of the group mapping: default group, sign-in restriction."""

    __tablename__ = "group_mapping_settings"

    auth_system_id: Mapped[int] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE"), primary_key=True
    )
    #: Group everyone arriving through the system joins (synced like a rule).
    default_group_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("member_groups.id", ondelete="SET NULL"), index=True
    )
    #: When set, sign-in is allowed only when Membership Status is one of ``allowed_statuses``.
    restrict_sign_in: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    #: Normalized statuses that may sign in (when ``restrict_sign_in``).
    allowed_statuses: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    #: The statuses as typed, for display.
    allowed_statuses_display: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    #: What a member whose status is not allowed reads on the error page.
    deny_message: Mapped[str] = mapped_column(sa.Text, default="")
    #: Key read from a groups value that is an object (e.g. ``code``); empty: its JSON string.
    group_object_key: Mapped[str] = mapped_column(sa.String(120), default="")
    #: "Allowed Email Domains": lower-cased domains the Email Address must end in exactly
    #: (after its last ``@``); empty: any address.
    allowed_email_domains: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    #: "Required Claim": a JMESPath over the profile that must be truthy; empty: none.
    required_claim: Mapped[str] = mapped_column(sa.Text, default="")
    #: What a member whose profile fails the Required Claim reads (empty: ``deny_message``).
    required_claim_message: Mapped[str] = mapped_column(sa.Text, default="")
    #: "Existing Accounts Only": nobody gets a new account through this system.
    existing_accounts_only: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    #: What a newcomer refused by ``existing_accounts_only`` reads (empty: ``deny_message``).
    existing_accounts_message: Mapped[str] = mapped_column(sa.Text, default="")

    default_group: Mapped[MemberGroup | None] = relationship()
    auth_system: Mapped[AuthSystem] = relationship(
        backref=backref("group_settings", cascade="all, delete-orphan", uselist=False)
    )
