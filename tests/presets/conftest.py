"""Fixtures of the preset tests that drive the admin pages."""

from __future__ import annotations

import pytest


@pytest.fixture
def signed_in(client, auth, manager):
    """Return a client signed in as a community manager."""
    auth.login_manager()
    return client
