"""Routing conditions (``relevant:``): when a question is asked, as a small expression language.

A variable's ``relevant`` says when the question was asked; the importers translate each tool's
routing into it (XLSForm ``relevant``, LimeSurvey relevance equations, Qualtrics display
logic). The grammar, close to XLSForm's without the ``${…}``::

    condition  := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | "(" condition ")" | call | comparison
    call       := "selected" "(" VARIABLE "," VALUE ")" | "answered" "(" VARIABLE ")"
    comparison := VARIABLE ("=" | "!=" | "<" | "<=" | ">" | ">=") VALUE
    VALUE      := a number | 'text' | "text"

Examples: ``a_un_partenariat = 1``; ``selected(freins, 'temps') and anciennete >= 2``;
``not answered(nb_partenaires)``.

Semantics on one respondent (vectorised by the ingester): a comparison with an unanswered
variable is false, except ``!=`` which is true (as in XLSForm and LimeSurvey, where an empty
answer differs from any value); a special code (« ne sait pas ») carries no value;
``answered(x)`` holds when ``x`` has a value or a special code other than « not asked »;
``selected(x, v)`` holds when option ``v`` of a multi-select (or the option of a categorical
item) was chosen. The text of a condition is kept (:attr:`Condition.text`) for messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from evalterritoire.errors import CodebookError

__all__ = ["Condition", "parse_condition"]

#: Longest condition text accepted (a routing rule is one line).
MAX_CONDITION_CHARS = 2_000
#: Deepest nesting of parentheses and ``not``.
MAX_CONDITION_DEPTH = 20

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?)
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<op><=|>=|!=|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = frozenset({"and", "or", "not", "selected", "answered"})


@dataclass(frozen=True)
class Condition:
    """A parsed routing condition: an expression tree over codebook variables.

    Attributes
    ----------
    kind : str
        ``compare``, ``selected``, ``answered``, ``not``, ``and`` or ``or``.
    variable : str
        The variable (``compare``, ``selected``, ``answered``).
    op : str
        The comparison operator (``compare``).
    value : str or float or None
        The value compared with, or the option of ``selected``.
    parts : tuple of Condition
        The operands of ``not`` (one), ``and`` and ``or``.
    text : str
        The source text (the whole condition's, on the root).
    """

    kind: str
    variable: str = ""
    op: str = ""
    value: str | float | None = None
    parts: tuple[Condition, ...] = ()
    text: str = ""

    def variables(self) -> Iterator[str]:
        """Every variable the condition reads (with repeats), in reading order."""
        if self.variable:
            yield self.variable
        for part in self.parts:
            yield from part.variables()

    def nodes(self) -> Iterator[Condition]:
        """Every node of the expression tree, root first."""
        yield self
        for part in self.parts:
            yield from part.nodes()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.depth = 0

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise ValueError(f"unexpected character {text[pos:].strip()[:1]!r}")
            kind = m.lastgroup or ""
            tokens.append((kind, m.group(kind)))
            pos = m.end()
        return tokens

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        k, v = self.peek()
        if k != kind or (value is not None and v != value):
            want = repr(value) if value is not None else kind
            got = repr(v) if v else "the end"
            raise ValueError(f"expected {want}, found {got}")
        self.pos += 1
        return v

    def parse(self) -> Condition:
        out = self.or_()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.peek()[1]!r}")
        return out

    def or_(self) -> Condition:
        parts = [self.and_()]
        while self.peek() == ("word", "or"):
            self.pos += 1
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else Condition("or", parts=tuple(parts))

    def and_(self) -> Condition:
        parts = [self.unary()]
        while self.peek() == ("word", "and"):
            self.pos += 1
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else Condition("and", parts=tuple(parts))

    def unary(self) -> Condition:
        self.depth += 1
        if self.depth > MAX_CONDITION_DEPTH:
            raise ValueError(f"nested more than {MAX_CONDITION_DEPTH} levels deep")
        try:
            kind, value = self.peek()
            if (kind, value) == ("word", "not"):
                self.pos += 1
                return Condition("not", parts=(self.unary(),))
            if (kind, value) == ("punct", "("):
                self.pos += 1
                inner = self.or_()
                self.take("punct", ")")
                return inner
            if (kind, value) in {("word", "selected"), ("word", "answered")}:
                return self.call(value)
            return self.comparison()
        finally:
            self.depth -= 1

    def variable(self) -> str:
        name = self.take("word")
        if name in _KEYWORDS:
            raise ValueError(f"expected a variable, found {name!r}")
        return name

    def literal(self) -> str | float:
        kind, value = self.peek()
        if kind == "number":
            self.pos += 1
            return float(value)
        if kind == "string":
            self.pos += 1
            return value[1:-1]
        raise ValueError(f"expected a value (a number or 'text'), found {value or 'the end'!r}")

    def call(self, name: str) -> Condition:
        self.pos += 1
        self.take("punct", "(")
        variable = self.variable()
        value = None
        if name == "selected":
            self.take("punct", ",")
            value = self.literal()
            value = _option_text(value)
        self.take("punct", ")")
        return Condition(name, variable=variable, value=value)

    def comparison(self) -> Condition:
        variable = self.variable()
        op = self.take("op")
        return Condition("compare", variable=variable, op=op, value=self.literal())


def _option_text(value: str | float) -> str:
    """An option given as a number (``selected(x, 2)``) is its text (``'2'``)."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return value


def parse_condition(text: str) -> Condition:
    """Parse a routing condition (grammar in this module's docstring).

    Parameters
    ----------
    text : str
        The condition, e.g. ``"a_un_partenariat = 1 and selected(freins, 'temps')"``.

    Returns
    -------
    Condition
        The expression tree (its root carries ``text``).

    Raises
    ------
    CodebookError
        With the problem and where it is (the variables are checked by the codebook loader).
    """
    if len(text) > MAX_CONDITION_CHARS:
        raise CodebookError(f"condition longer than {MAX_CONDITION_CHARS} characters")
    if not text.strip():
        raise CodebookError("empty condition")
    try:
        root = _Parser(text).parse()
    except ValueError as exc:
        raise CodebookError(f"cannot read the condition {text!r}: {exc}") from None
    return Condition(root.kind, root.variable, root.op, root.value, root.parts, text.strip())
