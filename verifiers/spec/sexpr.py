"""An s-expression reader for VNN-LIB (SMT-LIB) text.

One pass over the tokens (a regular expression) with a stack of the open lists; every node
knows the line and column (both 1-based) where it starts, so later stages can point at the
offending text.
``;`` starts a comment that runs to the end of the line. Numeric literals (decimal or
scientific notation, optionally signed: ``-0.5``, ``1e-3``, ``-2.5E+2``) are read exactly as
``Fraction``; an atom that starts like a number but is not one is an error.
"""

from __future__ import annotations

import bisect
import functools
import re
from fractions import Fraction

from verifiers.errors import SpecError

# Deeper nesting than this is rejected rather than risking Python's recursion limit in the
# reader and in the recursive stages after it.
MAX_DEPTH = 200

# Exponents beyond float64's range (about 1e-324 .. 1e308) are refused: an exact Fraction of
# 1e999999999 would need a billion-digit integer.
MAX_EXPONENT = 400

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE](?P<exponent>[+-]?\d+))?")
_LOOKS_NUMERIC = re.compile(r"[+-]?\.?\d")


class _Lines:
    """Line and column (1-based) of an offset in a text, found only when asked: the reader
    keeps offsets, and positions are wanted for errors, which are rare."""

    __slots__ = ("_text", "_starts")

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None

    def at(self, offset: int) -> tuple[int, int]:
        if self._starts is None:
            self._starts = [0, *(m.end() for m in re.finditer("\n", self._text))]
        line = bisect.bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


class _Located:
    """A node at an offset of its text; ``line`` and ``column`` are worked out when read."""

    __slots__ = ("_offset", "_lines")
    _offset: int
    _lines: _Lines

    @property
    def line(self) -> int:
        return self._lines.at(self._offset)[0]

    @property
    def column(self) -> int:
        return self._lines.at(self._offset)[1]


class Atom(_Located):
    """A symbol or a numeric literal (``number`` is set for literals)."""

    __slots__ = ("text", "number")

    def __init__(self, text: str, number: Fraction | None, offset: int, lines: _Lines) -> None:
        self._offset, self._lines = offset, lines  # not super().__init__: read per token
        self.text = text
        self.number = number

    def __repr__(self) -> str:
        return f"Atom({self.text!r} at {self.line}:{self.column})"


class SList(_Located):
    """A parenthesised list; ``line``/``column`` locate its opening parenthesis."""

    __slots__ = ("items",)

    def __init__(self, items: tuple[SExpr, ...], offset: int, lines: _Lines) -> None:
        self._offset, self._lines = offset, lines
        self.items = items

    def __repr__(self) -> str:
        return f"SList({len(self.items)} items at {self.line}:{self.column})"


SExpr = Atom | SList


# A parenthesis, an atom (up to whitespace, a parenthesis or a comment), or a comment (to
# the end of the line). Whitespace between them is skipped; ``\s`` is what str.isspace()
# calls whitespace, so atoms end where they always did.
_TOKEN = re.compile(r"[()]|[^\s();]+|;[^\n]*")


def read_sexprs(text: str, *, source: str = "<vnnlib>") -> list[SExpr]:
    """Read every top-level s-expression of ``text``, in one pass over its tokens."""
    lines = _Lines(text)
    forms: list[SExpr] = []
    items = forms  # the list being read
    open_lists: list[tuple[list[SExpr], int]] = []  # (enclosing items, offset of its '(')
    for match in _TOKEN.finditer(text):
        token, offset = match.group(), match.start()
        if token == "(":
            if len(open_lists) >= MAX_DEPTH:
                raise _error(f"nesting deeper than {MAX_DEPTH} levels", source, lines, offset)
            open_lists.append((items, offset))
            items = []
        elif token == ")":
            if not open_lists:
                raise _error("unexpected ')' without a matching '('", source, lines, offset)
            enclosing, start = open_lists.pop()
            enclosing.append(SList(tuple(items), start, lines))
            items = enclosing
        elif token[0] != ";":
            items.append(_atom(token, offset, lines, source))
    if open_lists:
        end_line, end_column = _end_of(text)
        message = (
            f"unbalanced parentheses: this '(' is never closed "
            f"(input ends at {end_line}:{end_column})"
        )
        raise _error(message, source, lines, open_lists[-1][1])
    return forms


def _error(message: str, source: str, lines: _Lines, offset: int) -> SpecError:
    line, column = lines.at(offset)
    return SpecError(message, source=source, line=line, column=column)


def _end_of(text: str) -> tuple[int, int]:
    """Line and column just past the last character."""
    last_newline = text.rfind("\n")
    return text.count("\n") + 1, len(text) - last_newline


# Literals repeat (bounds such as 0 and 1, the same constants in many asserts): each text's
# exact value is kept. Fractions are immutable, so sharing them is safe.
@functools.lru_cache(maxsize=4096)
def exact_number(text: str) -> Fraction:
    """The exact value of a decimal or scientific literal; ValueError saying why if bad."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise ValueError(f"bad number {text!r}")
    exponent = (match.group("exponent") or "0").lstrip("+-")
    if len(exponent) > 6 or int(exponent) > MAX_EXPONENT:
        raise ValueError(f"number {text!r} is out of range (exponent above {MAX_EXPONENT})")
    return Fraction(text)


def _atom(token: str, offset: int, lines: _Lines, source: str) -> Atom:
    if not _LOOKS_NUMERIC.match(token):
        return Atom(token, None, offset, lines)
    try:
        value = exact_number(token)
    except ValueError as exc:
        raise _error(str(exc), source, lines, offset) from None
    return Atom(token, value, offset, lines)
