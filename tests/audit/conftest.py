"""Fixtures of the audit-log tests: the sign-in tests' settings and the audit screen."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.accounts import second_manager_client
from tests.support.providers import OUTBOUND_LIMITS


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Use short timeouts and a small response cap for the outbound HTTP of these tests."""
    return {**app_config, **OUTBOUND_LIMITS}


@pytest.fixture(autouse=True)
def _fresh_jwks_cache(fresh_provider_caches: None) -> Iterator[None]:
    """Forget key sets and discovery documents around each test."""
    yield


@pytest.fixture
def audit_page(app, manager) -> Callable[..., str]:
    """Return a function that opens the audit screen (as the manager) with filters.

    Each request runs in its own app context: the tests' long-lived one would hand it the
    ``g`` (and so the signed-in user) of the last request made with another client.
    """
    manager_client = second_manager_client(app)

    def open_page(**filters: Any) -> str:
        with app.app_context():
            resp = manager_client.get("/admin/audit", query_string=filters)
        assert resp.status_code == 200
        return resp.get_data(as_text=True)

    return open_page
