"""Fixtures of the sign-in tests: outbound limits and fresh provider caches (the loopback
providers, ``oidc``, ``ams``, ``provider`` and ``sso``, are shared from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.providers import OUTBOUND_LIMITS


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Use short timeouts and a small response cap for the outbound HTTP of these tests."""
    return {**app_config, **OUTBOUND_LIMITS}


@pytest.fixture(autouse=True)
def _fresh_jwks_cache(fresh_provider_caches: None) -> Iterator[None]:
    """Forget key sets and discovery documents around each test."""
    yield
