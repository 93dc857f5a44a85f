"""Admin: the audit log screen."""

from portal.admin import bp  # noqa: F401
