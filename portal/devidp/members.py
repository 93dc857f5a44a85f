"""Who can sign in at a loopback provider: the member record and the thread-safe registry."""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Member:
    """A person who can sign in at a loopback provider.

    ``None`` fields are left out of the provider's answers (e.g. a member without a last
    name). ``extra`` is merged over the provider's claims / profile object; a ``None`` value
    there removes a claim.
    """

    username: str
    password: str = "password"
    id: int = 0
    sub: str = ""
    email: str | None = None
    email_verified: bool = True
    secondary_emails: list[str] = field(default_factory=list)
    given_name: str | None = None
    family_name: str | None = None
    membership_status: str | None = None
    membership_type: str | None = None
    groups: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


_MEMBER_FIELDS = frozenset(f.name for f in fields(Member))


class Members:
    """Thread-safe registry of members, keyed by username; change it freely between logins."""

    def __init__(self, members: Iterable[Member] = ()) -> None:
        self._lock = threading.RLock()
        self._by_username: dict[str, Member] = {}
        self._next_id = 1042
        self.group_names: dict[str, str] = {}
        for member in members:
            self.add_member(member)

    def add(self, username: str, **attrs: Any) -> Member:
        """Create and register a member; ``attrs`` are :class:`Member` fields."""
        return self.add_member(Member(username=username, **attrs))

    def add_member(self, member: Member) -> Member:
        """Register a member (replacing one with the same username); fills id and sub."""
        with self._lock:
            if not member.id:
                member.id = self._next_id
            self._next_id = max(self._next_id, member.id) + 1
            if not member.sub:
                member.sub = str(uuid.uuid5(uuid.NAMESPACE_URL, f"devidp:{member.username}"))
            self._by_username[member.username] = member
            return member

    def update(self, username: str, **changes: Any) -> Member:
        """Change fields of a member; unknown names go into ``extra`` (claims / profile)."""
        with self._lock:
            member = self[username]
            for name, value in changes.items():
                if name in _MEMBER_FIELDS and name != "username":
                    setattr(member, name, value)
                else:
                    member.extra[name] = value
            return member

    def remove(self, username: str) -> None:
        """Forget a member; later token or profile calls for them fail."""
        with self._lock:
            self._by_username.pop(username, None)

    def clear(self) -> None:
        """Forget every member."""
        with self._lock:
            self._by_username.clear()

    def get(self, username: str) -> Member | None:
        """The member with this username, or ``None``."""
        with self._lock:
            return self._by_username.get(username)

    def check_password(self, username: str, password: str) -> Member | None:
        """The member when the password matches, else ``None`` (constant-time compare)."""
        member = self.get(username)
        if member is None or not secrets.compare_digest(
            member.password.encode(), password.encode()
        ):
            return None
        return member

    def group_name(self, code: str) -> str:
        """Display name of a group code."""
        return self.group_names.get(code) or code.replace("_", " ").title()

    def __getitem__(self, username: str) -> Member:
        member = self.get(username)
        if member is None:
            raise KeyError(username)
        return member

    def __contains__(self, username: object) -> bool:
        with self._lock:
            return username in self._by_username

    def __iter__(self) -> Iterator[Member]:
        with self._lock:
            return iter(list(self._by_username.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_username)


def demo_members() -> list[Member]:
    """Members for the standalone demo: one with groups, one without a last name, one lapsed."""
    return [
        Member(
            username="jdoe",
            password="demo",
            email="jane.doe@example.org",
            secondary_emails=["jane@home.example"],
            given_name="Jane",
            family_name="Doe",
            membership_status="Active",
            membership_type="Professional",
            groups=["WEBINARS", "LIBRARY"],
        ),
        Member(
            username="mo",
            password="demo",
            email="mo@example.org",
            given_name="Mo",
            family_name=None,
            membership_status="Active",
            membership_type="Student",
            groups=[],
        ),
        Member(
            username="bwong",
            password="demo",
            email="b.wong@example.org",
            given_name="Bea",
            family_name="Wong",
            membership_status="Lapsed",
            membership_type="Basic",
            groups=["NEWSLETTER"],
        ),
    ]
