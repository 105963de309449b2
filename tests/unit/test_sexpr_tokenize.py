"""The VNN-LIB tokenizer (a regular expression) against a character-by-character reading of
the same rules: the same tokens at the same lines and columns, for any text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from verifiers.spec.sexpr import tokenize

# Parentheses, comments, line ends, ASCII and Unicode whitespace (str.isspace), atoms.
ALPHABET = "()();;\n\n\r\t  \x0b\x0c\x1c\x85\xa0\u2028\u3000ab_-+.eE019Y\u00e9"


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


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=80))
def test_tokens_and_positions_match_the_rules(text: str) -> None:
    assert [tuple(t) for t in tokenize(text)] == reference(text)


def test_a_property_file_tokenizes_with_positions() -> None:
    text = "; header\n(declare-const X_0 Real) ; x\n  (assert (<= X_0 -1e-3))"
    assert [tuple(t) for t in tokenize(text)] == [
        ("(", 2, 1), ("declare-const", 2, 2), ("X_0", 2, 16), ("Real", 2, 20), (")", 2, 24),
        ("(", 3, 3), ("assert", 3, 4), ("(", 3, 11), ("<=", 3, 12), ("X_0", 3, 15),
        ("-1e-3", 3, 19), (")", 3, 24), (")", 3, 25),
    ]  # fmt: skip
