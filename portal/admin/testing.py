"""Admin: *Test this configuration*, a traced sign-in that signs nobody in."""

from portal.admin import bp  # noqa: F401
