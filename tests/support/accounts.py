"""Local accounts of the tests: their passwords and signing in through the real form."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

MANAGER_EMAIL = "manager@example.com"
MANAGER_PASSWORD = "manager-password-1"
MEMBER_PASSWORD = "member-password-1"


class AuthActions:
    """Sign in and out through the real local sign-in form."""

    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def login(self, email: str = MANAGER_EMAIL, password: str = MANAGER_PASSWORD):
        return self._client.post("/login", data={"email": email, "password": password})

    def login_manager(self):
        return self.login(MANAGER_EMAIL, MANAGER_PASSWORD)

    def login_member(self):
        return self.login("member@example.com", MEMBER_PASSWORD)

    def logout(self):
        return self._client.post("/logout")


def second_manager_client(app: Flask, email: str = MANAGER_EMAIL) -> FlaskClient:
    """Return another browser (its own cookies), signed in as the manager."""
    client = app.test_client()
    with app.app_context():
        client.post("/login", data={"email": email, "password": MANAGER_PASSWORD})
    return client
