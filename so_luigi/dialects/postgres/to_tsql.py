"""PostgreSQL CHECK constraints (as pg_get_constraintdef prints them) in T-SQL, where the T-SQL
means the same.

sqlglot reads the PostgreSQL into a tree; a whitelist over that tree writes T-SQL: column names,
numbers (a number cast to a numeric type is the number), comparisons, AND/OR/NOT, IS [NOT] NULL,
[NOT] IN and [NOT] BETWEEN over numbers, and + - * % on them; a text column equal or not equal to
strings (=, <>, IN, = ANY (ARRAY[...])), compared by exact characters (``exact_text``). Anything
else raises Untranslatable with the reason and the constraint is listed in the report: text
ordering and patterns (SQL Server orders text by the column's collation), division (numeric scale
rules differ), booleans (bit), functions.
"""
import re

import sqlglot
from sqlglot import exp

from ..mssql.connection import ident as tsql_ident
from ..mssql.tsql import null_test
from . import forms


class Untranslatable(Exception):
    """Why an expression has no T-SQL form of the same meaning, in a few words."""


OPERATORS = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
             exp.And: "AND", exp.Or: "OR", exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Mod: "%"}
NUMBER_TYPES = {exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT,
                exp.DataType.Type.DECIMAL, exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT}
NUMBER = re.compile(r"-?\d+(\.\d+)?")
TEXT_COLUMNS = {"text", "varchar", "bpchar", "name", "citext"}
TEXT_TYPES = {exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR,
              exp.DataType.Type.NVARCHAR, exp.DataType.Type.NCHAR}
EXACT = "Latin1_General_100_BIN2"


def exact_text(expr):
    """A T-SQL text expression compared by its exact characters, as PostgreSQL's = does: a binary
    collation (not the column's, case-insensitive by default), and a mark appended so that the
    blanks at its end count (SQL Server's = ignores them)."""
    return f"({expr} + N'.') COLLATE {EXACT}"


def exact_literal(text):
    """The string ``exact_text`` compares with: the text with the same mark."""
    return "N'" + (text + ".").replace("'", "''") + "'"


NUMERIC_COLUMNS = {"int2", "int4", "int8", "smallint", "integer", "bigint", "numeric", "decimal", "float4",
                   "float8", "real", "double precision"}


def check(definition, table):
    """``CHECK (...)`` as pg_get_constraintdef prints it (NOT VALID apart) as ``(T-SQL)``."""
    text = definition.strip()
    if text.upper().endswith(" NOT VALID"):
        text = text[:-len(" NOT VALID")].rstrip()
    if not text.upper().startswith("CHECK"):
        raise Untranslatable("not a CHECK constraint")
    if "NO INHERIT" in text.upper():
        raise Untranslatable("NO INHERIT, which SQL Server has no counterpart for")
    try:
        tree = sqlglot.parse_one(text[len("CHECK"):].strip(), read="postgres")
    except sqlglot.errors.SqlglotError as exc:
        raise Untranslatable(f"cannot read it: {str(exc).splitlines()[0]}") from None
    return f"({_Writer(table).write(tree)})"


class _Writer:
    def __init__(self, table):
        self.table = table

    def write(self, node):
        kind = type(node)
        if kind is exp.Paren:
            return f"({self.write(node.this)})"
        if kind is exp.Column:
            return self._column(node.name)
        if kind is exp.Literal and not node.is_string:
            return node.this
        if kind is exp.Cast and isinstance(node.this, (exp.Literal, exp.Paren, exp.Neg)) \
                and node.to.this in NUMBER_TYPES:
            return self._number(node)
        if kind is exp.Null:
            return "NULL"
        if kind in (exp.EQ, exp.NEQ, exp.In) and self._text_column(node.this):
            return self._text_test(node)
        if kind in OPERATORS:
            return f"{self.write(node.this)} {OPERATORS[kind]} {self.write(node.expression)}"
        if kind is exp.Neg:
            return f"- {self.write(node.this)}"
        tested = null_test(node, self.write)
        if tested:
            return tested
        if kind is exp.Not:
            return f"NOT ({self.write(node.this)})"
        if kind is exp.In and node.expressions and not node.args.get("query"):
            return f"{self.write(node.this)} IN ({', '.join(self._number(e) for e in node.expressions)})"
        if kind is exp.Between:
            return (f"{self.write(node.this)} BETWEEN {self._number(node.args['low'])} "
                    f"AND {self._number(node.args['high'])}")
        if kind is exp.Literal or kind is exp.National:
            raise Untranslatable("it compares text, which SQL Server compares by the column's collation "
                                 "(case-insensitive by default)")
        if kind is exp.Div:
            raise Untranslatable("division: SQL Server's numeric scale and integer rules differ")
        raise Untranslatable(f"{node.sql(dialect='postgres')} is not translated")

    def _number(self, node):
        """A number, or a number cast to a numeric type (PostgreSQL prints a negative one as
        '-5'::integer), as T-SQL writes it."""
        cast = False
        while isinstance(node, (exp.Paren, exp.Cast)):
            if isinstance(node, exp.Cast):
                if node.to.this not in NUMBER_TYPES:
                    raise Untranslatable(f"{node.sql(dialect='postgres')}: a cast to another type")
                cast = True
            node = node.this
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
            return f"-{node.this.this}"
        if isinstance(node, exp.Literal) and (not node.is_string or cast and NUMBER.fullmatch(node.this)):
            return node.this
        return self.write(node)

    def _text_column(self, node):
        """The text column ``node`` names (possibly cast to a text type), or None."""
        while isinstance(node, (exp.Paren, exp.Cast)):
            if isinstance(node, exp.Cast) and node.to.this not in TEXT_TYPES:
                return None
            node = node.this
        if isinstance(node, exp.Column):
            col = self._typed(node.name)
            return col if col is not None and col.data_type in TEXT_COLUMNS else None
        return None

    def _strings(self, node):
        """The strings of a literal, an ARRAY[...] of them or = ANY's, each possibly cast to text."""
        while isinstance(node, (exp.Paren, exp.Cast, exp.Any)):
            if isinstance(node, exp.Cast) and not (node.to.this in TEXT_TYPES or node.to.this == exp.DataType.Type.ARRAY):
                raise Untranslatable(f"{node.sql(dialect='postgres')}: a cast to another type")
            node = node.this
        if isinstance(node, exp.Array):
            return [s for e in node.expressions for s in self._strings(e)]
        if isinstance(node, exp.Literal) and node.is_string:
            return [node.this]
        raise Untranslatable(f"{node.sql(dialect='postgres')} is not a string")

    def _text_test(self, node):
        """column = / <> / IN strings, by exact characters."""
        column = exact_text(tsql_ident(self._text_column(node.this).name))
        if isinstance(node, exp.In):
            if node.args.get("query"):
                raise Untranslatable("IN (a subquery)")
            strings = [s for e in node.expressions for s in self._strings(e)]
        else:
            strings = self._strings(node.expression)
        if isinstance(node, exp.NEQ) and len(strings) == 1:
            return f"{column} <> {exact_literal(strings[0])}"
        if isinstance(node, exp.NEQ):
            raise Untranslatable("<> ANY over several strings")
        if len(strings) == 1 and not isinstance(node, exp.In):
            return f"{column} = {exact_literal(strings[0])}"
        return f"{column} IN ({', '.join(exact_literal(t) for t in strings)})"

    def _typed(self, name):
        """The column ``name``, its type a domain's base type where it has one."""
        for col in self.table.columns:
            if col.name == name:
                form, inner = forms.pg_form(col, self.table)
                return inner if form is None else col if form != "enum" else None
        return None

    def _column(self, name):
        for col in self.table.columns:
            if col.name == name:
                col = self._typed(name) or col
                if col.data_type not in NUMERIC_COLUMNS:
                    raise Untranslatable(f"column {name} is {col.source_type or col.data_type}, not a number")
                return tsql_ident(name)
        raise Untranslatable(f"{name!r} is not a column of {self.table.name}")


_INDEX = re.compile(r"^btree \((?P<keys>.*?)\)(?: INCLUDE \((?P<include>.*?)\))?(?: WHERE \((?P<where>.*)\))?$")
_KEY = re.compile(r'\s*("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)( DESC)?\s*(?:,|$)')


def _names(text):
    """[(column, "ASC"|"DESC")] of a list of plain column names as pg_get_indexdef prints them;
    Untranslatable at anything else (an expression, an operator class, a collation, NULLS)."""
    out, at = [], 0
    while at < len(text):
        found = _KEY.match(text, at)
        if not found:
            raise Untranslatable(f"{text[at:].strip()!r} is not a plain column")
        name = found.group(1)
        out.append([name[1:-1].replace('""', '"') if name.startswith('"') else name,
                    "DESC" if found.group(2) else "ASC"])
        at = found.end()
    return out


def index(definition, table):
    """A PostgreSQL index (its definition after "USING ") as (key columns, INCLUDE columns, T-SQL
    filter or ""): a btree over plain columns, INCLUDE columns, and a WHERE SQL Server's filtered
    indexes can hold (comparisons of a column with numbers, IN, IS [NOT] NULL, joined by AND)."""
    found = _INDEX.match(definition.strip())
    if not found:
        method = definition.split(" ", 1)[0]
        raise Untranslatable(f"a {method} index, which SQL Server has no counterpart for" if method != "btree"
                             else "not a btree index over columns")
    keys = _names(found.group("keys"))
    include = [c for c, _ in _names(found.group("include") or "")]
    for name in [c for c, _ in keys] + include:
        if name not in [c.name for c in table.columns]:
            raise Untranslatable(f"{name!r} is not a column of {table.name}")
    where = ""
    if found.group("where"):
        try:
            tree = sqlglot.parse_one(found.group("where"), read="postgres")
        except sqlglot.errors.SqlglotError as exc:
            raise Untranslatable(f"cannot read its WHERE: {str(exc).splitlines()[0]}") from None
        where = _Filter(table).write(tree)
    return keys, include, where


class _Filter(_Writer):
    """The narrower grammar of a filtered index's WHERE: no OR, NOT, arithmetic or text."""

    def write(self, node):
        kind = type(node)
        if kind is exp.Paren:
            return self.write(node.this)
        if kind is exp.And:
            return f"{self.write(node.this)} AND {self.write(node.expression)}"
        if kind in (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE):
            if self._text_column(node.this):
                raise Untranslatable("it compares text, which a filtered index compares by the column's "
                                     "collation (case-insensitive by default)")
            if not isinstance(node.this, exp.Column):
                raise Untranslatable("a filtered index compares a column with a constant")
            if kind is exp.EQ and isinstance(node.expression, exp.Any):      # PostgreSQL's IN
                values = node.expression.this
                while isinstance(values, (exp.Paren, exp.Cast)):
                    values = values.this
                if isinstance(values, exp.Array):
                    return (f"{self._column(node.this.name)} IN "
                            f"({', '.join(self._number(e) for e in values.expressions)})")
            return f"{self._column(node.this.name)} {OPERATORS[kind]} {self._number(node.expression)}"
        if kind is exp.In and isinstance(node.this, exp.Column) and node.expressions:
            return f"{self._column(node.this.name)} IN ({', '.join(self._number(e) for e in node.expressions)})"
        tested = null_test(node, self._operand)
        if tested:
            return tested
        raise Untranslatable(f"{node.sql(dialect='postgres')}: a filtered index's WHERE holds only comparisons "
                             "of a column with numbers, IN and IS [NOT] NULL, joined by AND")

    def _operand(self, node):
        while isinstance(node, exp.Paren):
            node = node.this
        if not isinstance(node, exp.Column):
            raise Untranslatable("a filtered index tests a column for NULL, not an expression")
        return self._column(node.name)

    def _column(self, name):
        for col in self.table.columns:
            if col.name == name:
                return tsql_ident(name)
        raise Untranslatable(f"{name!r} is not a column of {self.table.name}")
