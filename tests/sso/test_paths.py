"""JMESPath helpers."""

from portal.sso.paths import search_path, validate_path


def test_validate_path_accepts_valid_expressions():
    """Valid expressions give None."""
    assert validate_path("access_token") is None
    assert validate_path('data."user-id"') is None
    assert validate_path("groups[*].name") is None


def test_validate_path_returns_parser_message():
    """An invalid expression gives the parser's message."""
    message = validate_path("a[")
    assert message and "a[" in message
    assert validate_path("") is not None


def test_search_path_finds_nested_values():
    """Nested values, projections and missing keys."""
    doc = {"data": {"id": 7, "groups": [{"name": "a"}, {"name": "b"}]}}
    assert search_path("data.id", doc) == 7
    assert search_path("data.groups[*].name", doc) == ["a", "b"]
    assert search_path("data.missing", doc) is None
