"""JMESPath expressions that pick values out of token and profile documents.

A path is written by a manager and evaluated at every sign-in against a document the
provider sends, so it is bounded twice: at save time (``path_limit_problem``: its length and
how many copies of the document its multi-selects can make) and at evaluation
(``search_path``: a budget of visited nodes and a cap on the result's size). A short path
such as ``[@,@,@,@][][@,@,@,@][]...`` multiplies the document four times per segment: without
the bounds, 312 characters of it ran for seconds at every sign-in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import jmespath
from jmespath import functions
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult
from jmespath.visitor import Options, TreeInterpreter

#: The longest path accepted. The paths providers need are short (the longest preset path,
#: ``Member.Emails[?Primary].Address | [0]``, has 36 characters) and the Access Token Path
#: column holds 255: anything longer is a program, not a path.
MAX_PATH_LENGTH = 255
#: The most copies of the document a path's multi-selects may make, multiplied along the
#: path (``[a, b]`` makes 2; ``join(' ', [given, family])`` too). Real paths stay under 10.
MAX_FAN_OUT = 64
#: How many expression nodes one evaluation may visit: a projection over a provider's list
#: of a thousand groups visits a few thousand; millions mean a runaway path.
MAX_VISITS = 100_000
#: The most items a path's result may hold (a list of groups is the largest real result).
MAX_RESULT_ITEMS = 10_000


class PathTooCostly(JMESPathError):
    """Evaluating a path went past the visit budget or the result cap."""


# -- dates: ``future(date)`` ------------------------------------------------------------------

#: ISO 8601 as providers send it: a date, or a date and time with optional seconds,
#: fraction (up to 7 digits, as .NET writes) and offset (``Z``, ``+01:00``, ``+0100``).
_ISO_DATE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.(?P<fraction>\d{1,7}))?)?)"
    r"(?P<offset>Z|[+-]\d{2}:?\d{2})?)?"
)
#: The JSON date of .NET serializers (ServiceStack, WCF): ``/Date(1735603200000-0500)/``.
_DOTNET_DATE = re.compile(r"/Date\((?P<ms>-?\d{1,15})(?P<offset>[+-]\d{4})?\)/")


def parse_date(text: Any) -> datetime | None:
    """Return the moment a provider's date text names (UTC), or None when it names none.

    Strict: an ISO 8601 date or date-time, or a .NET JSON date; anything else (another
    format, an impossible date, a number, a list) is None, never an exception. A date without
    a time is the end of that day (a membership that expires on the 31st still holds on the
    31st); a time without an offset is UTC.
    """
    if not isinstance(text, str) or len(text) > 40:
        return None
    text = text.strip()
    try:
        dotnet = _DOTNET_DATE.fullmatch(text)
        if dotnet:
            return datetime.fromtimestamp(int(dotnet["ms"]) / 1000, UTC)
        iso = _ISO_DATE.fullmatch(text)
        if iso is None:
            return None
        if iso["time"] is None:
            day = date.fromisoformat(iso["date"])
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        fraction = (iso["fraction"] or "")[:6]
        clock = iso["time"].split(".")[0] + (f".{fraction.ljust(6, '0')}" if fraction else "")
        offset = iso["offset"] or "+00:00"
        offset = "+00:00" if offset == "Z" else offset
        if len(offset) == 5:  # +0100
            offset = f"{offset[:3]}:{offset[3:]}"
        moment = datetime.fromisoformat(f"{iso['date']}T{clock}{offset}")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None


class PortalFunctions(functions.Functions):
    """JMESPath's functions, plus ``future(date)`` for providers that send only an expiry."""

    @functions.signature({"types": []})
    def _func_future(self, value: Any) -> bool | None:
        """Return true while a date is in the future, false once past, null when not a date.

        ``future(MembershipExpiresDate) && 'Active' || 'Lapsed'`` gives a Membership Status
        (a missing or unreadable date gives ``Lapsed``).
        """
        moment = parse_date(value)
        return None if moment is None else moment > datetime.now(UTC)


_OPTIONS = Options(custom_functions=PortalFunctions())


class _BoundedInterpreter(TreeInterpreter):
    """A tree interpreter that stops after ``MAX_VISITS`` node visits."""

    def __init__(self, budget: int) -> None:
        super().__init__(_OPTIONS)
        self._budget = budget

    def visit(self, node: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise PathTooCostly("the path visits too many values of the document")
        return super().visit(node, *args, **kwargs)


@lru_cache(maxsize=512)
def _compile(expr: str) -> ParsedResult:
    return jmespath.compile(expr)


def validate_path(expr: str) -> str | None:
    """Return None when the expression is valid JMESPath, else the parser's message."""
    try:
        _compile(expr)
    except JMESPathError as exc:
        return str(exc)
    return None


def _fan_out(node: Any) -> int:
    """Return how many copies of its input the multi-selects of ``node`` can make, at most."""
    if not isinstance(node, dict):
        return 1
    factor = 1
    if node.get("type") in ("multi_select_list", "multi_select_dict"):
        factor = max(1, len(node.get("children") or []))
    for child in node.get("children") or []:
        factor *= _fan_out(child)
        if factor > MAX_FAN_OUT:
            break
    return factor


def path_limit_problem(expr: str) -> str | None:
    """Return why a (syntactically valid) path is refused by the limits, or None.

    The text completes "The <field> path ...".
    """
    if len(expr) > MAX_PATH_LENGTH:
        return (
            f"is {len(expr)} characters long; a path may have at most {MAX_PATH_LENGTH} "
            "(provider paths are far shorter, and a long one can run for seconds at every "
            "sign-in)."
        )
    try:
        parsed = _compile(expr).parsed
    except JMESPathError:
        return None  # the syntax check reports it
    if _fan_out(parsed) > MAX_FAN_OUT:
        return (
            f"multiplies the document more than {MAX_FAN_OUT} times with its multi-selects "
            "([a, b, ...] inside projections); such a path can build millions of values at "
            "every sign-in. Pick the values you need with a simpler path."
        )
    return None


def _size(value: Any) -> int:
    if isinstance(value, list | dict):
        return len(value)
    return 1


def search_path(expr: str, data: Any) -> Any:
    """Evaluate a JMESPath expression against data, within the visit budget and result cap.

    Raise ``PathTooCostly`` (a ``JMESPathError``) when the path is longer than allowed, visits
    more than ``MAX_VISITS`` nodes or returns more than ``MAX_RESULT_ITEMS`` items.
    """
    if len(expr) > MAX_PATH_LENGTH:
        raise PathTooCostly("the path is longer than allowed")
    result = _BoundedInterpreter(MAX_VISITS).visit(_compile(expr).parsed, data)
    if _size(result) > MAX_RESULT_ITEMS:
        raise PathTooCostly("the path's result holds too many values")
    return result


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def child_path(base: str, key: str | int) -> str:
    """Return the JMESPath of member ``key`` (a name or a list index) of the value at ``base``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    name = key if _IDENTIFIER.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{base}.{name}" if base else name


@dataclass
class PathNode:
    """One value of a JSON document, with the JMESPath that picks it."""

    key: str
    path: str
    #: ``object``, ``array``, ``string``, ``number``, ``boolean`` or ``null``.
    kind: str
    #: The value as JSON text, for leaves.
    text: str = ""
    children: list[PathNode] = field(default_factory=list)


def path_tree(doc: Any, base: str = "", key: str = "") -> PathNode:
    """Return ``doc`` as a tree of nodes, each carrying the JMESPath of its value."""
    if isinstance(doc, dict):
        children = [path_tree(v, child_path(base, str(k)), str(k)) for k, v in doc.items()]
        return PathNode(key, base, "object", children=children)
    if isinstance(doc, list):
        children = [path_tree(v, child_path(base, i), f"[{i}]") for i, v in enumerate(doc)]
        return PathNode(key, base, "array", children=children)
    if isinstance(doc, bool):
        kind = "boolean"
    elif isinstance(doc, int | float):
        kind = "number"
    elif doc is None:
        kind = "null"
    else:
        kind = "string"
    return PathNode(key, base, kind, text=json.dumps(doc, ensure_ascii=False))
