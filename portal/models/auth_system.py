"""Authentication systems: the configuration a community manager fills in."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import utcnow
from portal.models.user import Team
from portal.sso.fields import (
    FIELDS,
    LOGIN_LOCAL_ONLY,
    LOGIN_MODES,
    PROFILE_REQUEST_FIELDS,
    TYPE_OAUTH2,
    TYPES,
)

#: Column length of each setting (None: unbounded), from the one field table.
_LENGTH = {name: field.length for name, field in FIELDS.items()}


class AuthSystem(db.Model):
    """One configured identity provider."""

    __tablename__ = "auth_systems"
    # Ids are never reused (SQLite would hand a deleted system's id to the next one), so
    # the audit log's system id names one system forever.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    #: One of ``TYPES``: ``oauth2`` or ``personify``.
    type: Mapped[str] = mapped_column(sa.String(_LENGTH["type"]), default=TYPE_OAUTH2)
    name: Mapped[str] = mapped_column(sa.String(_LENGTH["name"]))
    #: Lower-cased name; unique so names differ by more than case.
    name_key: Mapped[str] = mapped_column(sa.String(_LENGTH["name"]), unique=True)
    #: URL identifier derived from the name; part of the Redirect URL.
    slug: Mapped[str] = mapped_column(sa.String(_LENGTH["name"]), unique=True)
    client_id: Mapped[str] = mapped_column(sa.String(_LENGTH["client_id"]))
    #: Fernet token of the client secret (MultiFernet, newest key first).
    client_secret_encrypted: Mapped[str] = mapped_column(sa.Text, default="")
    login_url: Mapped[str] = mapped_column(sa.Text)
    token_url: Mapped[str] = mapped_column(sa.Text)
    #: ``POST`` (default) or ``GET``.
    token_method: Mapped[str] = mapped_column(sa.String(_LENGTH["token_method"]), default="POST")
    token_headers: Mapped[str] = mapped_column(sa.Text, default="")
    token_body: Mapped[str] = mapped_column(sa.Text, default="")
    #: "Accept sign-ins started by the platform": a refresh token POSTed to the Sign-in
    #: Initiation URL is redeemed (no state to check: the manager opts in).
    platform_start: Mapped[bool] = mapped_column(
        sa.Boolean, default=False, server_default=sa.false()
    )
    #: The token request body that redeems a POSTed refresh token at the Token API URL.
    refresh_token_body: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    access_token_path: Mapped[str] = mapped_column(
        sa.String(_LENGTH["access_token_path"]), default="access_token"
    )
    #: OpenID Connect issuer; with ``jwks_url`` it turns on id_token validation.
    issuer: Mapped[str] = mapped_column(sa.Text, default="")
    jwks_url: Mapped[str] = mapped_column(sa.Text, default="")
    #: Value of ``%Scope%``.
    scope: Mapped[str] = mapped_column(sa.String(_LENGTH["scope"]), default="openid email profile")
    #: Personify SSO: the login page the browser is sent to with ``vi`` and ``vt``.
    sso_login_url: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Personify SSO: the vendor identifier (``vi``).
    vendor_id: Mapped[str] = mapped_column(
        sa.String(_LENGTH["vendor_id"]), default="", server_default=""
    )
    #: Personify SSO: the vendor's username in every SOAP call.
    vendor_username: Mapped[str] = mapped_column(
        sa.String(_LENGTH["vendor_username"]), default="", server_default=""
    )
    #: Fernet token of the Vendor Password (hex AES key; also sent to the web services).
    vendor_password_encrypted: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Fernet token of the Vendor Block (hex AES initialization block).
    vendor_block_encrypted: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Fernet token of the Webhook Signing Secret (HMAC key of the deprovisioning webhook).
    webhook_secret_encrypted: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Personify SSO: the SSO web service (``service.asmx``).
    sso_web_service_url: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Personify SSO: the IMS web service (``IMService.asmx``), which gives the roles.
    ims_web_service_url: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Personify Data Services (optional): first and last names.
    data_services_url: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    data_services_username: Mapped[str] = mapped_column(
        sa.String(_LENGTH["data_services_username"]), default=""
    )
    #: Fernet token of the Data Services Password.
    data_services_password_encrypted: Mapped[str] = mapped_column(
        sa.Text, default="", server_default=""
    )
    logout_url: Mapped[str] = mapped_column(sa.Text, default="")
    profile_edit_url: Mapped[str] = mapped_column(sa.Text, default="")
    #: The Logoff API: called server to server at sign-out (no URL: not called).
    logoff_url: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: ``POST`` (default), ``GET`` or ``DELETE``.
    logoff_method: Mapped[str] = mapped_column(
        sa.String(_LENGTH["logoff_method"]), default="POST", server_default="POST"
    )
    logoff_headers: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    logoff_body: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: "Re-check Membership Every (minutes)": 0 = off.
    recheck_minutes: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    #: "Grace Period (minutes)": how long a re-check that cannot reach the provider keeps access.
    grace_minutes: Mapped[int] = mapped_column(sa.Integer, default=60, server_default="60")
    login_label: Mapped[str] = mapped_column(sa.String(_LENGTH["login_label"]), default="")
    #: One of ``LOGIN_MODES``.
    login_mode: Mapped[str] = mapped_column(
        sa.String(_LENGTH["login_mode"]), default=LOGIN_LOCAL_ONLY
    )
    onboarding_team_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="SET NULL")
    )
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    #: "This provider verifies email addresses": an upgrade by Email Address may link an
    #: existing account without ``email_verified: true`` in the provider's answer.
    trusts_email: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    #: "This provider verifies usernames": an upgrade by Username may link an existing account.
    trusts_username: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    onboarding_team: Mapped[Team | None] = relationship()
    params: Mapped[list[ProfileParamRow]] = relationship(
        back_populates="auth_system", cascade="all, delete-orphan", order_by="ProfileParamRow.id"
    )
    #: The profile requests, in order (rows only for the positions in use).
    profile_requests: Mapped[list[ProfileRequestRow]] = relationship(
        back_populates="auth_system",
        cascade="all, delete-orphan",
        order_by="ProfileRequestRow.position",
    )

    @property
    def type_label(self) -> str:
        """Return the human name of the type."""
        return TYPES.get(self.type, self.type)

    @property
    def login_mode_label(self) -> str:
        """Return the human name of the Alternate Login mode."""
        return LOGIN_MODES.get(self.login_mode, self.login_mode)

    def param(self, field: str) -> ProfileParamRow | None:
        """Return the profile parameter row for ``field``, if any."""
        return next((p for p in self.params if p.field == field), None)

    def profile_request(self, position: int) -> ProfileRequestRow | None:
        """Return the profile request at ``position`` (1 to 4), if any."""
        return next((r for r in self.profile_requests if r.position == position), None)

    def drop_unused_profile_requests(self) -> None:
        """Remove the requests left without a URL, headers or body (an emptied slot)."""
        for row in list(self.profile_requests):
            if not (row.url or row.headers or row.body):
                self.profile_requests.remove(row)

    def __repr__(self) -> str:
        return f"<AuthSystem {self.slug!r}>"


def _profile_request_part(position: int, part: str) -> property:
    """Return the attribute that reads and writes one part of a profile request by its field name.

    The field table names each part (``profile_url``, ``profile2_headers``...), so the form,
    validation, audit and export handle them as any other setting; the rows hold them.
    """
    default = FIELDS[PROFILE_REQUEST_FIELDS[position][part]].default

    def read(system: AuthSystem) -> str:
        row = system.profile_request(position)
        return getattr(row, part) if row is not None else default

    def write(system: AuthSystem, value: str) -> None:
        row = system.profile_request(position)
        if row is None:
            if (value or default) == default:
                return
            row = ProfileRequestRow(position=position)
            system.profile_requests.append(row)
        setattr(row, part, value or default)

    return property(read, write, doc=f"{part} of profile request {position}")


for _position, _parts in PROFILE_REQUEST_FIELDS.items():
    for _part, _name in _parts.items():
        setattr(AuthSystem, _name, _profile_request_part(_position, _part))


class ProfileParamRow(db.Model):
    """Where one profile field is found in the provider's profile JSON."""

    __tablename__ = "profile_params"
    __table_args__ = (
        sa.UniqueConstraint("auth_system_id", "field", name="uq_profile_params_field"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Indexed by the unique constraint above, which it leads.
    auth_system_id: Mapped[int] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE")
    )
    #: Key from ``portal.sso.profile_fields.PROFILE_FIELDS`` (``user_id``, ``email`` ...).
    field: Mapped[str] = mapped_column(sa.String(40))
    #: JMESPath expression into the profile JSON; empty when not mapped.
    path: Mapped[str] = mapped_column(sa.Text, default="")
    #: "User can upgrade from this field".
    can_upgrade: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    #: "Provider must supply this value".
    must_supply: Mapped[bool] = mapped_column(sa.Boolean, default=False)

    auth_system: Mapped[AuthSystem] = relationship(back_populates="params")


class ProfileRequestRow(db.Model):
    """One profile request of a system's chain: sent after the token request, in position order."""

    __tablename__ = "profile_requests"
    __table_args__ = (
        sa.UniqueConstraint("auth_system_id", "position", name="uq_profile_requests_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Indexed by the unique constraint above, which it leads.
    auth_system_id: Mapped[int] = mapped_column(
        sa.ForeignKey("auth_systems.id", ondelete="CASCADE")
    )
    #: 1 to 4: the order of the chain; request N may read the answers of 1 to N-1.
    position: Mapped[int] = mapped_column(sa.Integer)
    #: ``GET`` or ``POST``.
    method: Mapped[str] = mapped_column(sa.String(_LENGTH["profile_method"]), default="GET")
    #: URL template.
    url: Mapped[str] = mapped_column(sa.Text, default="")
    #: ``Name: value`` lines, a template.
    headers: Mapped[str] = mapped_column(sa.Text, default="")
    #: Body template, sent with POST.
    body: Mapped[str] = mapped_column(sa.Text, default="")

    auth_system: Mapped[AuthSystem] = relationship(back_populates="profile_requests")
