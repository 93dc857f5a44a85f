"""Keys of the tests: the app's encryption key and JSON Web Key Sets of signing keys."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet
from joserfc.jwk import RSAKey
from werkzeug.wrappers import Response

#: The encryption key of every app the suite creates (one per run).
TEST_KEY = Fernet.generate_key().decode()


def jwks_of(*keys: RSAKey) -> dict:
    """Return the public JWKS document of keys."""
    return {"keys": [key.as_dict(private=False) for key in keys]}


def jwks_response(doc: dict) -> Response:
    """Return a JSON response for a JWKS document."""
    return Response(json.dumps(doc), content_type="application/json")
