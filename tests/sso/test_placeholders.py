"""Placeholders: discovery, validation and context-aware rendering."""

import base64
import json
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.sso.errors import TemplateError
from portal.sso.fields import LABELS, TEMPLATE_FIELDS
from portal.sso.placeholders import (
    PLACEHOLDERS,
    Context,
    basic_auth,
    body_context,
    find_placeholders,
    parse_header_lines,
    render,
    render_headers,
    validate_header_lines,
    validate_template,
)

NASTY = 'a+b/c=&d"e %20 é\\ \u2603'
any_text = st.text()
no_line_breaks = st.text().filter(lambda s: not any(c in s for c in "\r\n\0"))


def test_every_field_offers_only_known_placeholders():
    """Each template field offers a subset of the known placeholders and has a label."""
    for field, names in TEMPLATE_FIELDS.items():
        assert names <= PLACEHOLDERS
        assert field in LABELS


def test_find_placeholders_in_order_and_ignores_percent_escapes():
    """Names come back in order; %C3%A9 and %2F are not placeholders."""
    template = "https://idp/x?n=%C3%A9&s=%2F&a=%ClientID%&b=%State%&c=%Code:base64%"
    assert find_placeholders(template) == ["ClientID", "State", "Code"]


def test_find_placeholders_of_empty_template():
    """An empty template holds no placeholders."""
    assert find_placeholders("") == []


def test_validate_template_empty_gives_no_messages():
    """An empty template is valid for any field."""
    assert validate_template("", "login_url") == []


def test_validate_template_accepts_offered_placeholders():
    """A template using only what its field offers is valid."""
    template = "https://idp/auth?client_id=%ClientID%&state=%State%&code_challenge=%CodeChallenge%"
    assert validate_template(template, "login_url") == []


def test_validate_template_names_unknown_placeholder_and_field():
    """An unknown placeholder is reported with the field's label."""
    assert validate_template("https://x/?a=%Foo%", "token_url") == [
        "Unknown placeholder %Foo% in the Token API URL."
    ]


def test_profile_request_offers_the_tokens():
    """The profile URL and headers may use the access, ID and refresh tokens."""
    template = "Authorization: Bearer %Token%\nX-Id: %IDToken%\nX-Refresh: %RefreshToken%"
    assert validate_template(template, "profile_headers") == []
    assert validate_template("https://x/?c=%Code%", "profile_url") == [
        "%Code% is not available in the Profile API URL."
    ]


def test_validate_template_rejects_unavailable_placeholder():
    """%Code% cannot be used in the login URL."""
    assert validate_template("https://x/?c=%Code%", "login_url") == [
        "%Code% is not available in the Identity Provider Login URL."
    ]


@pytest.mark.parametrize("field", sorted(TEMPLATE_FIELDS))
def test_validate_template_labels_every_field(field):
    """Every field's messages name its human label."""
    (message,) = validate_template("%Bogus%", field)
    assert "%Bogus%" in message and LABELS[field] in message


def test_validate_template_rejects_unknown_modifier():
    """An unknown modifier is reported with the placeholder and field."""
    (message,) = validate_template("%Code:rot13%", "token_body")
    assert "rot13" in message and "%Code:rot13%" in message and "Token API Post Body" in message


def test_validate_template_reports_each_problem_once():
    """A repeated bad placeholder is reported once."""
    assert len(validate_template("%Foo% %Foo%", "profile_url")) == 1


@given(any_text)
def test_url_context_round_trips(value):
    """Any text survives the URL context and parses back with parse_qs/unquote."""
    url = render(
        "https://idp.example/cb?x=%ClientSecret%&y=1", Context.URL, {"ClientSecret": value}
    )
    query = urlsplit(url).query
    assert parse_qs(query, keep_blank_values=True)["x"] == [value]
    assert parse_qs(query)["y"] == ["1"]
    path = render("https://idp.example/u/%ClientSecret%/x", Context.URL, {"ClientSecret": value})
    assert unquote(urlsplit(path).path) == f"/u/{value}/x"


@given(any_text)
def test_form_context_round_trips(value):
    """Any text survives the FORM context."""
    body = render("a=1&secret=%ClientSecret%&b=2", Context.FORM, {"ClientSecret": value})
    assert parse_qs(body, keep_blank_values=True) == {"a": ["1"], "secret": [value], "b": ["2"]}


@given(any_text)
def test_json_context_round_trips(value):
    """Any text survives the JSON context."""
    body = render('{"v": "%ClientSecret%"}', Context.JSON, {"ClientSecret": value})
    assert json.loads(body) == {"v": value}


@given(any_text, any_text)
def test_basic_auth_round_trips(client_id, secret):
    """basic_auth decodes back to the form-encoded id and secret."""
    decoded = base64.b64decode(basic_auth(client_id, secret)).decode("utf-8")
    raw_id, _, raw_secret = decoded.partition(":")
    assert unquote_plus(raw_id) == client_id
    assert unquote_plus(raw_secret) == secret


@given(any_text)
def test_basic_auth_header_round_trips(secret):
    """%BasicAuth% rendered in a header decodes back to the credentials."""
    values = {"BasicAuth": basic_auth("client id:1", secret)}
    ((name, value),) = render_headers("Authorization: Basic %BasicAuth%", values)
    assert name == "Authorization"
    scheme, encoded = value.split(" ", 1)
    raw_id, _, raw_secret = base64.b64decode(encoded).decode().partition(":")
    assert (scheme, unquote_plus(raw_id), unquote_plus(raw_secret)) == (
        "Basic",
        "client id:1",
        secret,
    )


@given(no_line_breaks)
def test_header_context_keeps_value_raw(value):
    """A value without line breaks lands raw in a header."""
    assert render("x-%ClientSecret%-y", Context.HEADER, {"ClientSecret": value}) == f"x-{value}-y"


@given(any_text, st.sampled_from(["\r", "\n", "\0", "\r\n"]), any_text)
def test_header_context_refuses_line_breaks(before, bad, after):
    """A value holding CR, LF or NUL is refused in a header, without echoing the value."""
    value = before + bad + after
    with pytest.raises(TemplateError) as info:
        render("Bearer %Token%", Context.HEADER, {"Token": value})
    if len(value) > 3:
        assert value not in str(info.value)


@given(any_text, st.sampled_from(list(Context)))
def test_base64_modifier(value, context):
    """%Name:base64% is the base64 of the UTF-8 value, encoded for the context."""
    rendered = render("%Code:base64%", context, {"Code": value})
    expected = base64.b64encode(value.encode()).decode()
    if context is Context.URL:
        rendered = unquote(rendered)
    elif context is Context.FORM:
        rendered = unquote_plus(rendered)
    assert rendered == expected


def test_nasty_secret_reaches_every_context_intact():
    """The design's example secret survives URL, FORM and JSON."""
    values = {"ClientSecret": NASTY}
    assert parse_qs(render("s=%ClientSecret%", Context.URL, values))["s"] == [NASTY]
    assert parse_qs(render("s=%ClientSecret%", Context.FORM, values))["s"] == [NASTY]
    assert json.loads(render('"%ClientSecret%"', Context.JSON, values)) == NASTY


def test_missing_value_renders_empty():
    """A placeholder absent from the values renders as the empty string."""
    assert render("a=%Code%&b=%State%", Context.URL, {"State": "s"}) == "a=&b=s"


def test_percent_escapes_are_left_alone():
    """Literal percent-escapes in a template are not touched."""
    assert render("q=%C3%A9&s=%State%", Context.URL, {"State": "x y"}) == "q=%C3%A9&s=x%20y"


def test_parse_header_lines():
    """One header per line; blank lines ignored; values trimmed."""
    text = "Accept: application/json\n\n  \nAuthorization: Bearer %Token%\r\nX-Empty:"
    assert parse_header_lines(text) == [
        ("Accept", "application/json"),
        ("Authorization", "Bearer %Token%"),
        ("X-Empty", ""),
    ]


def test_validate_header_lines_reports_bad_lines():
    """A line without a colon and a name that is not a token are reported by line."""
    problems = validate_header_lines("Accept: x\nno colon here\nBad Name: y\n")
    assert problems == [
        'Line 2 is not of the form "Name: value".',
        'Line 3: "Bad Name" is not a valid header name.',
    ]
    assert validate_header_lines("") == []


def test_parse_header_lines_refuses_bad_lines():
    """Parsing a malformed header list raises TemplateError."""
    with pytest.raises(TemplateError):
        parse_header_lines("no colon")


def test_render_headers_renders_values_in_header_context():
    """Header values are rendered raw; names are kept."""
    assert render_headers("Authorization: Bearer %Token%", {"Token": "a+b/c="}) == [
        ("Authorization", "Bearer a+b/c=")
    ]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], Context.FORM),
        ([("Accept", "application/json")], Context.FORM),
        ([("content-type", "application/json; charset=utf-8")], Context.JSON),
        ([("Content-Type", "application/vnd.api+json")], Context.JSON),
        ([("Content-Type", "application/x-www-form-urlencoded")], Context.FORM),
    ],
)
def test_body_context(headers, expected):
    """The Content-Type header decides the body context; form by default."""
    assert body_context(headers) is expected
