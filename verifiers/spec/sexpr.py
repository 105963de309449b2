"""An s-expression reader for VNN-LIB (SMT-LIB) text.

A tokenizer and a recursive-descent reader; every token and every node keeps the line and
column (both 1-based) where it starts, so later stages can point at the offending text.
``;`` starts a comment that runs to the end of the line. Numeric literals (decimal or
scientific notation, optionally signed: ``-0.5``, ``1e-3``, ``-2.5E+2``) are read exactly as
``Fraction``; an atom that starts like a number but is not one is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from verifiers.errors import SpecError

# Deeper nesting than this is rejected rather than risking Python's recursion limit in the
# reader and in the recursive stages after it.
MAX_DEPTH = 200

# Exponents beyond float64's range (about 1e-324 .. 1e308) are refused: an exact Fraction of
# 1e999999999 would need a billion-digit integer.
MAX_EXPONENT = 400

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE](?P<exponent>[+-]?\d+))?")
_LOOKS_NUMERIC = re.compile(r"[+-]?\.?\d")


class Token(NamedTuple):
    text: str
    line: int
    column: int


@dataclass(frozen=True)
class Atom:
    """A symbol or a numeric literal (``number`` is set for literals)."""

    text: str
    line: int
    column: int
    number: Fraction | None = None


@dataclass(frozen=True)
class SList:
    """A parenthesised list; ``line``/``column`` locate its opening parenthesis."""

    items: tuple[SExpr, ...]
    line: int
    column: int


SExpr = Atom | SList


# A parenthesis, an atom (up to whitespace, a parenthesis or a comment), or a comment (to
# the end of the line). Whitespace between them is skipped; ``\s`` is what str.isspace()
# calls whitespace, so atoms end where they always did.
_TOKEN = re.compile(r"[()]|[^\s();]+|;[^\n]*")


def tokenize(text: str) -> list[Token]:
    """Split text into ``(``, ``)`` and atom tokens, dropping whitespace and comments."""
    tokens: list[Token] = []
    line, line_start, scanned = 1, 0, 0
    for match in _TOKEN.finditer(text):
        start = match.start()
        newlines = text.count("\n", scanned, start)
        if newlines:
            line += newlines
            line_start = text.rindex("\n", scanned, start) + 1
        scanned = match.end()
        token = match.group()
        if token[0] != ";":
            tokens.append(Token(token, line, start - line_start + 1))
    return tokens


def read_sexprs(text: str, *, source: str = "<vnnlib>") -> list[SExpr]:
    """Read every top-level s-expression of ``text``."""
    return _Reader(tokenize(text), source, _end_of(text)).read_all()


def _end_of(text: str) -> tuple[int, int]:
    """Line and column just past the last character."""
    last_newline = text.rfind("\n")
    return text.count("\n") + 1, len(text) - last_newline


def exact_number(text: str) -> Fraction:
    """The exact value of a decimal or scientific literal; ValueError saying why if bad."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise ValueError(f"bad number {text!r}")
    exponent = (match.group("exponent") or "0").lstrip("+-")
    if len(exponent) > 6 or int(exponent) > MAX_EXPONENT:
        raise ValueError(f"number {text!r} is out of range (exponent above {MAX_EXPONENT})")
    return Fraction(text)


def _atom(token: Token, source: str) -> Atom:
    if not _LOOKS_NUMERIC.match(token.text):
        return Atom(token.text, token.line, token.column)
    try:
        value = exact_number(token.text)
    except ValueError as exc:
        raise SpecError(str(exc), source=source, line=token.line, column=token.column) from None
    return Atom(token.text, token.line, token.column, value)


class _Reader:
    def __init__(self, tokens: list[Token], source: str, end: tuple[int, int]) -> None:
        self._tokens = tokens
        self._source = source
        self._end = end
        self._pos = 0

    def read_all(self) -> list[SExpr]:
        forms: list[SExpr] = []
        while self._pos < len(self._tokens):
            forms.append(self._read(0))
        return forms

    def _read(self, depth: int) -> SExpr:
        token = self._tokens[self._pos]
        self._pos += 1
        if token.text == ")":
            raise self._error("unexpected ')' without a matching '('", token)
        if token.text != "(":
            return _atom(token, self._source)
        if depth >= MAX_DEPTH:
            raise self._error(f"nesting deeper than {MAX_DEPTH} levels", token)
        items: list[SExpr] = []
        while self._pos < len(self._tokens):
            if self._tokens[self._pos].text == ")":
                self._pos += 1
                return SList(tuple(items), token.line, token.column)
            items.append(self._read(depth + 1))
        end_line, end_column = self._end
        raise self._error(
            f"unbalanced parentheses: this '(' is never closed "
            f"(input ends at {end_line}:{end_column})",
            token,
        )

    def _error(self, message: str, token: Token) -> SpecError:
        return SpecError(message, source=self._source, line=token.line, column=token.column)
