"""Fixtures for the loopback identity providers' own tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from portal.devidp import AMSProvider, OIDCProvider, demo_members

from .helpers import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI


@pytest.fixture
def oidc() -> Iterator[OIDCProvider]:
    """A running OIDC provider with the demo members."""
    with OIDCProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
        members=demo_members(),
    ) as idp:
        yield idp


@pytest.fixture
def ams() -> Iterator[AMSProvider]:
    """A running AMS provider with the demo members."""
    with AMSProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
        members=demo_members(),
    ) as idp:
        yield idp


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An HTTP client that does not follow redirects."""
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        yield client
