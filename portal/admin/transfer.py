"""Admin: export and import of an authentication system's configuration."""

from portal.admin import bp  # noqa: F401
