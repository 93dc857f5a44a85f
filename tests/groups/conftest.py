"""Fixtures of the groups-and-content area: groups, content, memberships, statement counting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from portal.extensions import db
from portal.models import ContentItem, GroupMembership, MemberGroup, User
from portal.models.content import VISIBILITY_GROUPS, VISIBILITY_SIGNED_IN


@pytest.fixture
def create_group(app: Flask) -> Callable[..., MemberGroup]:
    """Return a factory of member groups."""

    def make(name: str, description: str = "") -> MemberGroup:
        group = MemberGroup(name=name, name_key=name.casefold(), description=description)
        db.session.add(group)
        db.session.commit()
        return group

    return make


@pytest.fixture
def create_item(app: Flask) -> Callable[..., ContentItem]:
    """Return a factory of content items (open to everyone signed in unless groups are given)."""

    def make(
        title: str,
        kind: str = "recording",
        groups: list[MemberGroup] | None = None,
        url: str = "https://video.example.com/watch/1",
        **fields: Any,
    ) -> ContentItem:
        item = ContentItem(
            title=title,
            kind=kind,
            url=url,
            visibility=VISIBILITY_GROUPS if groups else VISIBILITY_SIGNED_IN,
            groups=list(groups or []),
            **fields,
        )
        db.session.add(item)
        db.session.commit()
        return item

    return make


@pytest.fixture
def add_membership(app: Flask) -> Callable[..., GroupMembership]:
    """Return a helper that puts a user in a group (by hand, or from a system)."""

    def make(user: User, group: MemberGroup, system: Any = None) -> GroupMembership:
        membership = GroupMembership(
            user_id=user.id, group_id=group.id, auth_system_id=system.id if system else None
        )
        db.session.add(membership)
        db.session.commit()
        return membership

    return make


@pytest.fixture
def memberships_of(app: Flask) -> Callable[[User], set[tuple[str, int | None]]]:
    """Return a helper listing a user's memberships as (group name, auth system id) pairs."""

    def read(user: User) -> set[tuple[str, int | None]]:
        rows = db.session.execute(
            sa.select(MemberGroup.name, GroupMembership.auth_system_id)
            .join(MemberGroup, MemberGroup.id == GroupMembership.group_id)
            .where(GroupMembership.user_id == user.id)
        )
        return {(name, system_id) for name, system_id in rows}

    return read


class StatementCounter:
    """Count the SQL statements an engine runs inside ``counting()``."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        self.statements = []
        engine = db.engine

        def listener(conn, cursor, statement, parameters, context, executemany):
            self.statements.append(statement)

        sa.event.listen(engine, "before_cursor_execute", listener)
        try:
            yield self.statements
        finally:
            sa.event.remove(engine, "before_cursor_execute", listener)


@pytest.fixture
def statement_counter(app: Flask) -> StatementCounter:
    """Return a counter of SQL statements."""
    return StatementCounter()
