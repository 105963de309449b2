"""The VNN-LIB reader against a character-by-character reading of the tokenizing rules: for
any balanced text, the reader's lists and atoms in the same order at the same lines and
columns as the rules' tokens."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from verifiers.spec.sexpr import SExpr, SList, read_sexprs


def reference(text: str) -> list[tuple[str, int, int]]:
    """Whitespace separates tokens; ( and ) are tokens; ; starts a comment running to the
    end of the line; anything else up to whitespace, a parenthesis or ; is an atom. Lines
    count "\\n" only; columns count characters, both from 1."""
    tokens, line, column, i = [], 1, 1, 0
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            line, column, i = line + 1, 1, i + 1
        elif ch.isspace():
            column, i = column + 1, i + 1
        elif ch == ";":
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            column, i = column + (end - i), end
        elif ch in "()":
            tokens.append((ch, line, column))
            column, i = column + 1, i + 1
        else:
            end = i
            while end < len(text) and not text[end].isspace() and text[end] not in "();":
                end += 1
            tokens.append((text[i:end], line, column))
            column, i = column + (end - i), end
    return tokens


# Separators: ASCII and Unicode whitespace (str.isspace; only "\n" ends a line), comments
# running to the end of a line.
SPACES = [" ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2028", "\u3000"]
SEPARATORS = st.lists(st.sampled_from([*SPACES, "; c\n", ";\n", "; (x) ;\n"]))
# Atoms: literals, and any run of atom characters that does not start like a number.
SYMBOLS = st.text(alphabet="ab_-+.eE019Y<=\u00e9", min_size=1, max_size=6).filter(
    lambda atom: re.match(r"[+-]?\.?\d", atom) is None
)
ATOMS = st.sampled_from(["-1e-3", "0.5", "7", "+2", ".5"]) | SYMBOLS
TREES = st.recursive(ATOMS, lambda children: st.lists(children, max_size=4), max_leaves=25)


def render(tree: str | list, draw: st.DrawFn) -> str:
    """The tree as text, a separator between items (never empty: atoms would merge)."""
    if isinstance(tree, str):
        return tree
    items = [render(child, draw) for child in tree]
    gaps = ["".join(draw(SEPARATORS)) or " " for _ in range(len(items) + 1)]
    return "(" + "".join(gap + item for gap, item in zip(gaps, items + [""], strict=True)) + ")"


@st.composite
def balanced_texts(draw: st.DrawFn) -> str:
    forms = draw(st.lists(TREES.filter(lambda t: isinstance(t, list)), min_size=1, max_size=3))
    return "".join("".join(draw(SEPARATORS)) + render(form, draw) for form in forms)


def preorder(nodes: list[SExpr]) -> list[tuple[str, int, int] | tuple[str]]:
    """Each list as its '(', items and ')', each atom, in reading order, with the reader's
    positions (a list keeps where it opens, not where it closes)."""
    out: list[tuple[str, int, int] | tuple[str]] = []
    for node in nodes:
        if isinstance(node, SList):
            out.append(("(", node.line, node.column))
            out += preorder(list(node.items))
            out.append((")",))
        else:
            out.append((node.text, node.line, node.column))
    return out


@settings(max_examples=300, deadline=None)
@given(balanced_texts())
def test_the_reader_nests_and_locates_what_the_rules_tokenize(text: str) -> None:
    expected = [(")",) if token[0] == ")" else token for token in reference(text)]
    assert preorder(read_sexprs(text)) == expected
