"""Where the sign-in flow may send requests: the address policy from the app's settings."""

from __future__ import annotations

from flask import current_app

from portal.sso.netpolicy import AddressPolicy


def address_policy() -> AddressPolicy:
    """Return the outbound address policy: loopback only outside production, plus the
    operator's ``PORTAL_ALLOWED_PRIVATE_NETWORKS``."""
    cfg = current_app.config
    return AddressPolicy(
        allow_loopback=cfg.get("PORTAL_ENV") != "production",
        allowed_networks=tuple(cfg.get("PORTAL_ALLOWED_PRIVATE_NETWORKS") or ()),
    )
