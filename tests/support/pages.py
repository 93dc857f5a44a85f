"""Read pages the way a person does: errors beside fields, labels, shown values, audit rows."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any


def errors_beside(page: str, field_id: str) -> list[str]:
    """Return the error messages shown beside the field with this id."""
    pattern = re.compile(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', re.S)
    return [html.unescape(m) for m in pattern.findall(page)]


class PageParser(HTMLParser):
    """Collect the ids, labels, fieldset legends and controls of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: dict[str, dict[str, str | None]] = {}
        self.labels: list[dict[str, Any]] = []
        self.controls: list[dict[str, Any]] = []
        self._label: dict[str, Any] | None = None
        self._fieldsets: list[dict[str, Any]] = []
        self._legend: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        attributes["_tag"] = tag
        if attributes.get("id"):
            self.ids[attributes["id"] or ""] = attributes
        if tag == "label":
            self._label = {"for": attributes.get("for"), "text": ""}
            self.labels.append(self._label)
        elif tag == "fieldset":
            self._fieldsets.append({"legend": ""})
        elif tag == "legend" and self._fieldsets:
            self._legend = self._fieldsets[-1]
        elif tag in ("input", "select", "textarea"):
            attributes["_groups"] = [f["legend"] for f in self._fieldsets]
            self.controls.append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label = None
        elif tag == "legend":
            self._legend = None
        elif tag == "fieldset" and self._fieldsets:
            self._fieldsets.pop()

    def handle_data(self, data: str) -> None:
        if self._label is not None:
            self._label["text"] += data
        if self._legend is not None:
            self._legend["legend"] += data

    def label_texts(self) -> list[str]:
        """Return every label's text, whitespace collapsed."""
        return [" ".join(label["text"].split()) for label in self.labels]

    def control_for(self, text: str) -> dict[str, Any]:
        """Return the control whose label text is exactly ``text`` (there must be one)."""
        matches = [label for label in self.labels if " ".join(label["text"].split()) == text]
        assert len(matches) == 1, f"{len(matches)} labels read {text!r}"
        target = matches[0]["for"]
        assert target in self.ids, f"label {text!r} points at missing id {target!r}"
        return next(c for c in self.controls if c.get("id") == target)


def parse_page(page: str) -> PageParser:
    """Parse an HTML page."""
    parser = PageParser()
    parser.feed(page)
    return parser


class _ValueParser(HTMLParser):
    """Collect what each control of a form shows: input values, textarea text, selections."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: dict[str, Any] = {}
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        name = a.get("name") or ""
        if tag == "input" and a.get("type") == "checkbox":
            self.values[name] = "checked" in a
        elif tag == "input" and a.get("type") not in ("submit", "button"):
            self.values[name] = a.get("value") or ""
        elif tag == "textarea":
            self._textarea = name
            self.values[name] = ""
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select is not None and "selected" in a:
            self.values[self._select] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.values[self._textarea] += data


def form_values(page: str) -> dict[str, Any]:
    """Return what each control of the page shows, by name (textareas without the first newline).

    Checkboxes are True/False; a text field's value is what a browser would submit.
    """
    parser = _ValueParser()
    parser.feed(page)
    values = parser.values
    for name, value in values.items():
        if isinstance(value, str) and value.startswith(("\r\n", "\n")):
            values[name] = value[2:] if value.startswith("\r\n") else value[1:]
    return values


def as_post(values: dict[str, Any]) -> dict[str, str]:
    """Return shown form values as a browser would post them (checked boxes as "y")."""
    post: dict[str, str] = {}
    for name, value in values.items():
        if value is True:
            post[name] = "y"
        elif value is not False and name:
            post[name] = value
    return post


def screen_rows(page: str) -> list[str]:
    """Return the text of each event row of the audit screen (tags removed), newest first."""
    body = page.split('<table class="list audit">', 1)[1].split("<tbody>", 1)[1]
    rows: list[str] = []
    depth = 0
    current: list[str] = []
    for token in re.split(r"(<tr>|</tr>|<table[^>]*>|</table>)", body):
        if token.startswith("<table"):
            depth += 1
        elif token == "</table>":
            depth -= 1
            if depth < 0:
                break
        elif token == "<tr>" and depth == 0:
            current = []
            continue
        elif token == "</tr>" and depth == 0:
            text = html.unescape(re.sub(r"<[^>]+>", " ", "".join(current)))
            rows.append(" ".join(text.split()))
            continue
        current.append(token)
    return [r for r in rows if not r.startswith("No events")]
