"""The rule language of the business configuration: Spark SQL expressions over tags, checked before use.

Tags (``conf/tags.yaml``), lifecycle and tier rules, product, channel and campaign rules are all short SQL
expressions. Before any of them reaches Spark, :func:`identifiers` lists the columns and functions it uses
and refuses syntax that could hide a name from that check (back-quoted names, comments, several statements);
only allow-listed functions may be called, so ``reflect`` or ``java_method`` cannot run.
"""

from __future__ import annotations

import re

from jobs.platform.errors import CatalogueError, UnsafeExpression

# Functions a tag expression may call. Anything else (reflect, java_method, UDFs...) is refused.
ALLOWED_FUNCTIONS = {
    "abs", "array", "array_contains", "array_join", "split", "array_sort", "ceil", "coalesce", "concat", "datediff", "date_add",
    "date_sub", "element_at", "exp", "floor", "greatest", "if", "isnull", "isnotnull", "least", "length", "ln",
    "log", "lower", "months_between", "nullif", "nvl", "pow", "power", "round", "size", "sqrt", "struct",
    "substr", "substring", "trim", "upper", "year", "month", "dayofweek", "cast", "sign", "in",
}
SQL_WORDS = {
    "and", "or", "not", "case", "when", "then", "else", "end", "null", "true", "false", "is", "in", "between",
    "like", "as", "int", "bigint", "double", "string", "boolean", "date", "interval", "day", "days", "distinct",
}


_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_IDENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(\s*\()?")


FORBIDDEN = {"`": "back-quoted names", ";": "statement separators", "--": "comments", "/*": "comments", '"': "double-quoted strings", "$": "variables"}


def identifiers(expr: str) -> tuple[set[str], set[str]]:
    """(column names, function names) used by a SQL expression; string literals and keywords are skipped,
    as are struct field accesses (``.c``). Syntax that could hide a name from this check (back-quoted
    identifiers, comments, several statements) is refused outright."""
    text = _STRING.sub("''", expr)
    for token, what in FORBIDDEN.items():
        if token in text:
            raise UnsafeExpression(f"{what} ({token!r}) are not allowed in expressions: {expr[:80]!r}")
    cols, funcs = set(), set()
    for m in _IDENT.finditer(text):
        word = m.group(1)
        if m.start() > 0 and text[m.start() - 1] == ".":
            continue
        if word[0].isdigit() or word.lower() in SQL_WORDS:
            continue
        if m.group(2):
            funcs.add(word.lower())
        else:
            cols.add(word)
    # "x as c" inside struct(...): the alias is not a column reference
    for alias in re.findall(r"\bas\s+([A-Za-z_][A-Za-z0-9_]*)", text, flags=re.IGNORECASE):
        if alias.lower() not in SQL_WORDS:
            cols.discard(alias)
    return cols, funcs


def check_expression(owner: str, expr: str, known: set[str]) -> str:
    """A business rule's SQL (product, channel, lifecycle or tier rule): safe syntax, allow-listed functions
    and known tags only; the error names ``owner``."""
    try:
        cols, funcs = identifiers(expr)
    except CatalogueError as exc:
        raise CatalogueError(f"{owner}: {exc}") from exc
    if funcs - ALLOWED_FUNCTIONS:
        raise CatalogueError(f"{owner}: function(s) not allowed: {sorted(funcs - ALLOWED_FUNCTIONS)}")
    if cols - known:
        raise CatalogueError(f"{owner}: unknown tag(s) {sorted(cols - known)}")
    return expr


# ---- SQL text ---------------------------------------------------------------------------------------------
# Stages that build wide projections write them as SQL text (``selectExpr``): one call to Spark per projection
# instead of one per Column operation, which on a 300-column plan is most of the time of a small run.


def quoted(name: str) -> str:
    """A column name as SQL text."""
    return "`" + name.replace("`", "``") + "`"


def sql_string(value: str) -> str:
    """A string literal as SQL text (Spark's escapes: backslash, quote)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_literal(value) -> str:
    """A Python value as an SQL literal of the type ``F.lit`` would give it (bool, int, float as double, str)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"no SQL literal for {value!r}")
        return f"{value!r}D"
    if isinstance(value, str):
        return sql_string(value)
    raise TypeError(f"no SQL literal for {type(value).__name__} {value!r}")


def case_when(*branches: tuple[str, str], otherwise: str | None = None) -> str:
    """``CASE WHEN c1 THEN v1 ... [ELSE otherwise] END`` from (condition, value) pairs of SQL text."""
    body = " ".join(f"WHEN ({cond}) THEN {value}" for cond, value in branches)
    return f"CASE {body}{f' ELSE {otherwise}' if otherwise is not None else ''} END"
