"""JMESPath helpers."""

import pytest

from portal.sso.paths import (
    MAX_FAN_OUT,
    MAX_PATH_LENGTH,
    MAX_RESULT_ITEMS,
    PathTooCostly,
    path_limit_problem,
    search_path,
    validate_path,
)


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


# --- limits (issue 12, finding 9d) -----------------------------------------------------------

#: Each segment makes four copies of every value and flattens them: 4**n values.
EXPLOSIVE = "[@,@,@,@][]" * 28 + ".sub"


def test_the_attack_path_is_the_312_character_one():
    """The path of the finding: 312 characters, valid JMESPath, millions of values."""
    assert len(EXPLOSIVE) == 312
    assert validate_path(EXPLOSIVE) is None


def test_a_path_longer_than_the_limit_is_refused_with_the_reason():
    """A too-long path is refused, and the message says how long it is and why it matters."""
    problem = path_limit_problem(EXPLOSIVE)
    assert problem is not None
    assert problem.startswith(f"is 312 characters long; a path may have at most {MAX_PATH_LENGTH}")
    assert "seconds at every sign-in" in problem


def test_a_short_but_explosive_path_is_refused():
    """Under the length limit, nested multi-selects that multiply the document are refused."""
    short = "[@,@,@,@][]" * 4
    assert len(short) < MAX_PATH_LENGTH
    problem = path_limit_problem(short)
    assert problem is not None and f"more than {MAX_FAN_OUT} times" in problem


@pytest.mark.parametrize(
    "path",
    [
        "sub",
        "Member.Emails[?Primary].Address | [0]",
        "join(' ', [given_name, family_name])",
        "groups[*].name",
        "Member.Groups[].Code",
        "{id: sub, mail: email}",
        "emails[?primary].value | [0]",
    ],
)
def test_real_paths_pass_the_limits(path):
    """The paths providers need stay well inside the limits."""
    assert path_limit_problem(path) is None


def test_evaluation_stops_a_runaway_path_cleanly():
    """A path stored without the save-time check raises PathTooCostly (a JMESPathError), not
    a minutes-long evaluation or a MemoryError."""
    with pytest.raises(PathTooCostly, match="too many values"):
        search_path("[@,@,@,@][]" * 20, {"sub": "1"})


def test_a_path_over_the_length_limit_is_not_evaluated():
    """search_path refuses a stored path that is too long before compiling it."""
    with pytest.raises(PathTooCostly, match="longer than allowed"):
        search_path(EXPLOSIVE, {"sub": "1"})


def test_a_result_larger_than_the_cap_is_refused():
    """A path whose result holds more values than the cap fails instead of mapping them."""
    doc = {"groups": list(range(MAX_RESULT_ITEMS + 1))}
    with pytest.raises(PathTooCostly, match="too many values"):
        search_path("groups", doc)
    assert len(search_path("groups[:10]", doc)) == 10
