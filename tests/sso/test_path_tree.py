"""The JMESPath tree of the test screen: each value's path picks exactly that value."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from portal.sso.paths import PathNode, child_path, path_tree, search_path

KEYS = st.text(min_size=1, max_size=12)
LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
DOCS = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


def leaves(node: PathNode):
    if node.kind in ("object", "array"):
        for child in node.children:
            yield from leaves(child)
    else:
        yield node


def test_child_path_quotes_names_that_are_not_identifiers():
    """Plain names stay bare; dashes, spaces and quotes are quoted; indexes use brackets."""
    assert child_path("", "email") == "email"
    assert child_path("Member", "e-mail") == 'Member."e-mail"'
    assert child_path("a", 'say "hi"') == 'a."say \\"hi\\""'
    assert child_path("Member.Emails", 0) == "Member.Emails[0]"


@given(st.dictionaries(KEYS, DOCS, min_size=1, max_size=5))
def test_every_leaf_path_picks_its_value(doc):
    """For any JSON object, searching a leaf's path gives back that leaf's value."""
    for leaf in leaves(path_tree(doc)):
        assert search_path(leaf.path, doc) == json.loads(leaf.text), leaf.path
