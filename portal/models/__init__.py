"""The database models, one module per aggregate."""

from portal.models.auth_system import AuthSystem, ProfileParamRow
from portal.models.identity import Identity, LoginAttempt
from portal.models.user import ROLE_MANAGER, ROLE_MEMBER, Team, User

__all__ = [
    "ROLE_MANAGER",
    "ROLE_MEMBER",
    "AuthSystem",
    "Identity",
    "LoginAttempt",
    "ProfileParamRow",
    "Team",
    "User",
]
