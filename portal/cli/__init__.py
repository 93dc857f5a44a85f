"""Command-line operations: `flask --app portal <command>`, one module per area."""

from __future__ import annotations

from flask import Flask

from portal.cli import accounts, audit, demo, secrets, transfer


def init_app(app: Flask) -> None:
    """Register the commands of every area."""
    for area in (accounts, secrets, demo, audit, transfer):
        area.init_app(app)
