"""The database models, one module per aggregate."""

from portal.models.audit import AuditEvent
from portal.models.auth_system import AuthSystem, ProfileParamRow, ProfileRequestRow
from portal.models.content import ContentItem, content_groups
from portal.models.group import GroupMappingSettings, GroupMembership, GroupRule, MemberGroup
from portal.models.identity import Identity, LoginAttempt
from portal.models.lifecycle import ProviderSession, ProviderSessionEnd, UsedToken
from portal.models.settings_version import SettingsVersion
from portal.models.sso_session import SSOSession
from portal.models.user import ROLE_MANAGER, ROLE_MEMBER, Team, User

__all__ = [
    "ROLE_MANAGER",
    "ROLE_MEMBER",
    "AuditEvent",
    "AuthSystem",
    "ContentItem",
    "GroupMappingSettings",
    "GroupMembership",
    "GroupRule",
    "MemberGroup",
    "content_groups",
    "Identity",
    "LoginAttempt",
    "ProfileParamRow",
    "ProfileRequestRow",
    "ProviderSession",
    "ProviderSessionEnd",
    "SettingsVersion",
    "SSOSession",
    "Team",
    "UsedToken",
    "User",
]
