"""Model formulas are data: parsed and checked against a whitelist before patsy sees them.

patsy evaluates every factor of a formula as Python code (``I(__import__('os').system(…))``
would run), and a formula comes from a study file, i.e. from data. :func:`check_formula`
parses it with Python's own parser (:mod:`ast`; nothing is evaluated) and accepts only:

* column names of the model frame (``score_global``, ``stage``, a context column…), and
  ``Q("a column")`` for a name that is not an identifier;
* numbers (``0``, ``1``, ``-1`` for the intercept, a power such as ``(a + b) ** 2``);
* the formula operators ``~ + - * / : **`` and parentheses;
* ``C(column)``, with an optional contrast: ``C(column, Treatment)``,
  ``C(column, Treatment(reference=…))``, ``Sum``, ``Helmert``, ``Poly``, ``Diff``, or
  ``levels=[…]``;
* ``I(expression)`` and the functions of :data:`FUNCTIONS` (``np.log``, ``np.exp``,
  ``np.sqrt``, ``center``, ``standardize``…) over expressions made of column names, numbers,
  strings, ``True``/``False``, arithmetic (``+ - * / // % **``), comparisons
  (``== != < <= > >=``) and the element-wise ``& | ~``.

Anything else — another function, an attribute other than ``np.<function>``, a subscript, a
lambda, a name starting with ``_``, a keyword argument outside ``C()`` — is refused with a
:class:`~evalterritoire.errors.ModelError` naming the model and the piece refused. Formulas
are at most :data:`MAX_FORMULA_LENGTH` characters.

:func:`check_no_constant_terms` refuses, with one message naming the term, a term that is
constant over the fitted rows of an ordinal model (its cut-points already play the intercept:
statsmodels would stop on it).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Collection
from typing import Any

from evalterritoire.errors import ModelError

__all__ = [
    "CONTRASTS",
    "FUNCTIONS",
    "MAX_FORMULA_LENGTH",
    "check_formula",
    "check_no_constant_terms",
]

#: Functions a formula may call on an expression (numpy's through the ``np`` name, patsy's own).
FUNCTIONS: frozenset[str] = frozenset(
    {
        "np.log",
        "np.log1p",
        "np.log2",
        "np.log10",
        "np.exp",
        "np.sqrt",
        "np.abs",
        "np.square",
        "center",
        "standardize",
        "scale",
    }
)
#: Contrasts a categorical term ``C(column, …)`` may name (patsy's).
CONTRASTS: frozenset[str] = frozenset({"Treatment", "Sum", "Helmert", "Poly", "Diff"})
#: Longest formula accepted (characters).
MAX_FORMULA_LENGTH = 2000

_FORMULA_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.MatMult, ast.Pow)
_EXPRESSION_OPS = (
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.BitAnd,
    ast.BitOr,
    ast.BitXor,
)
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_UNARY = (ast.USub, ast.UAdd, ast.Invert, ast.Not)


class _RefusedError(Exception):
    """A piece of the formula outside the whitelist (``str(exc)`` says which)."""


def _split(formula: str) -> tuple[str, str]:
    """Outcome and terms, split at the one top-level ``~``; ``:`` becomes ``@`` for ``ast``.

    patsy's interaction operator ``:`` is not a Python operator: it is parsed as ``@`` (same
    precedence class as ``*``), which only ever stands for ``:`` here.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(formula).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError) as exc:
        raise _RefusedError(f"cannot be read ({exc.args[0] if exc.args else exc})") from None
    parts: list[list[str]] = [[]]
    depth = 0
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT):
            continue
        if tok.type == tokenize.DEDENT:
            continue
        text = tok.string
        if tok.type == tokenize.OP:
            depth += text in "([{"
            depth -= text in ")]}"
            if text == "~" and depth == 0:
                parts.append([])
                continue
            if text == ":":
                text = "@"
        parts[-1].append(text)
    if len(parts) != 2:
        raise _RefusedError("must have the form 'outcome ~ terms' (one '~')")
    outcome, terms = (" ".join(p) for p in parts)
    if not outcome.strip():
        raise _RefusedError("has no outcome before '~'")
    return outcome, terms


def _parse(text: str) -> ast.expr:
    try:
        return ast.parse(text.strip() or "1", mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _RefusedError("is not a formula (unbalanced brackets or a stray symbol)") from None


def _dotted(node: ast.expr) -> str | None:
    """``np.log`` for an ``np.log`` node, ``center`` for a name; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


class _Checker:
    """Walks a parsed formula; ``columns`` (when given) are the names a formula may use."""

    def __init__(self, columns: Collection[str] | None) -> None:
        self.columns = None if columns is None else set(columns)

    def column(self, name: str) -> None:
        if name.startswith("_"):
            raise _RefusedError(f"name {name!r} is not allowed")
        if self.columns is not None and name not in self.columns:
            raise _RefusedError(f"unknown column {name!r}")

    # ----------------------------------------------------------------- formula level
    def term(self, node: ast.expr) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, _FORMULA_OPS):
            self.term(node.left)
            if isinstance(node.op, ast.Pow):
                if not (isinstance(node.right, ast.Constant) and type(node.right.value) is int):
                    raise _RefusedError("a power of terms must be a whole number")
                return
            self.term(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            self.term(node.operand)
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return
        elif isinstance(node, ast.Name):
            self.column(node.id)
        elif isinstance(node, ast.Call):
            self.call(node)
        else:
            raise _RefusedError(f"{_describe(node)} is not allowed in a formula")

    def call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        if name == "C":
            self.categorical(node)
            return
        if name not in {"I", "Q"} | FUNCTIONS:
            shown = name or ast.unparse(node.func)[:80]
            raise _RefusedError(f"calling {shown!r} is not allowed")
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise _RefusedError(f"{name}() takes one expression")
        if name == "Q":
            self.quoted(node.args[0])
        else:
            self.expression(node.args[0])

    def quoted(self, node: ast.expr) -> None:
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            raise _RefusedError("Q() takes a column name in quotes")
        self.column(node.value)

    def categorical(self, node: ast.Call) -> None:
        if not 1 <= len(node.args) <= 2 or any(isinstance(a, ast.Starred) for a in node.args):
            raise _RefusedError("C() takes a column and, optionally, a contrast")
        first = node.args[0]
        if isinstance(first, ast.Call) and _dotted(first.func) == "Q":
            self.quoted(first.args[0] if len(first.args) == 1 else first)
        elif isinstance(first, ast.Name):
            self.column(first.id)
        else:
            raise _RefusedError("C() takes a column name")
        if len(node.args) == 2:
            self.contrast(node.args[1])
        for keyword in node.keywords:
            if keyword.arg != "levels":
                raise _RefusedError(f"C() takes no argument {keyword.arg!r}")
            self.literal_list(keyword.value)

    def contrast(self, node: ast.expr) -> None:
        name = _dotted(node.func) if isinstance(node, ast.Call) else _dotted(node)
        if name not in CONTRASTS:
            raise _RefusedError(f"contrast {name or _describe(node)!r} is not allowed")
        if isinstance(node, ast.Call):
            for value in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(value, ast.List | ast.Tuple):
                    self.literal_list(value)
                elif not _is_literal(value):
                    raise _RefusedError(f"{name}() takes literal values only")
            if any(k.arg is None for k in node.keywords):
                raise _RefusedError(f"{name}() takes named literal values only")

    def literal_list(self, node: ast.expr) -> None:
        if not (isinstance(node, ast.List | ast.Tuple) and all(map(_is_literal, node.elts))):
            raise _RefusedError("levels must be a list of literal values")

    # ----------------------------------------------------------------- expressions
    def expression(self, node: ast.expr) -> None:
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, _EXPRESSION_OPS):
                raise _RefusedError(f"operator {_describe(node)} is not allowed in an expression")
            self.expression(node.left)
            self.expression(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY):
            self.expression(node.operand)
        elif isinstance(node, ast.Compare):
            if not all(isinstance(op, _COMPARISONS) for op in node.ops):
                raise _RefusedError("only the comparisons == != < <= > >= are allowed")
            for part in [node.left, *node.comparators]:
                self.expression(part)
        elif _is_literal(node):
            return
        elif isinstance(node, ast.Name):
            self.column(node.id)
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name == "C" or name == "I":
                raise _RefusedError(f"{name}() cannot be nested in an expression")
            self.call(node)
        else:
            raise _RefusedError(f"{_describe(node)} is not allowed in an expression")


def _is_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    if not isinstance(node, ast.Constant):
        return False
    value = node.value
    return type(value) in (int, float, bool) or (isinstance(value, str) and len(value) <= 200)


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "an attribute",
        ast.Subscript: "a subscript",
        ast.Lambda: "a lambda",
        ast.MatMult: "':'",
        ast.Constant: "this constant",
        ast.BoolOp: "'and'/'or'",
    }
    for kind, text in names.items():
        if isinstance(node, kind) or isinstance(getattr(node, "op", None), kind):
            return text
    return f"'{type(node).__name__}'"


def check_formula(
    formula: str, columns: Collection[str] | None = None, *, name: str = "model"
) -> None:
    """Refuse a formula that is not made only of the whitelisted pieces (module docstring).

    Parameters
    ----------
    formula : str
        A patsy formula ``outcome ~ terms``.
    columns : collection of str, optional
        The columns of the model frame; when given, every name must be one of them.
    name : str
        The model's name (for the message).

    Raises
    ------
    ModelError
        Naming the model, the formula and the piece refused.

    Examples
    --------
    >>> check_formula("score_global ~ C(stage) + np.log(population)")
    >>> check_formula("y ~ I(__import__('os').system('ls'))")
    Traceback (most recent call last):
    ...
    evalterritoire.errors.ModelError: model 'model': formula 'y ~ I(__import__('os').system('ls'))' refused: calling "__import__('os').system" is not allowed
    """
    if not isinstance(formula, str) or len(formula) > MAX_FORMULA_LENGTH:
        raise ModelError(
            f"model '{name}': the formula must be text of at most {MAX_FORMULA_LENGTH} characters"
        )
    checker = _Checker(columns)
    shown = formula if len(formula) <= 200 else formula[:199] + "…"
    try:
        outcome, terms = _split(formula)
        checker.term(_parse(outcome))
        checker.term(_parse(terms))
    except _RefusedError as exc:
        raise ModelError(f"model '{name}': formula '{shown}' refused: {exc}") from None
    except RecursionError:
        raise ModelError(f"model '{name}': formula '{shown}' refused: nested too deeply") from None


def check_no_constant_terms(name: str, matrix: Any) -> None:
    """Refuse a model-matrix column that takes one value over the fitted rows.

    Parameters
    ----------
    name : str
        The model's name (for the message).
    matrix : pandas.DataFrame
        The model matrix without intercept (an ordinal model's: its cut-points play the
        intercept, so a constant term cannot be estimated).

    Raises
    ------
    ModelError
        Naming the constant term(s).
    """
    import numpy as np

    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2 or values.shape[0] == 0:
        return
    constant = [
        str(column)
        for column, j in zip(matrix.columns, range(values.shape[1]), strict=True)
        if np.all(values[:, j] == values[0, j])
    ]
    if constant:
        raise ModelError(
            f"model '{name}': {', '.join(constant)} take(s) a single value over the "
            f"{values.shape[0]} respondents fitted; an ordinal model cannot estimate a constant "
            "term (its cut-points play the intercept): remove it from the formula or check "
            "the context file"
        )
