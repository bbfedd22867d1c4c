"""PostgreSQL CHECK constraints (as pg_get_constraintdef prints them) in T-SQL, where the T-SQL
means the same.

sqlglot reads the PostgreSQL into a tree; a whitelist over that tree writes T-SQL: column names,
numbers (a number cast to a numeric type is the number), comparisons, AND/OR/NOT, IS [NOT] NULL,
[NOT] IN and [NOT] BETWEEN over numbers, and + - * % on them. Anything else raises Untranslatable
with the reason and the constraint is listed in the report: text (SQL Server compares it by the
column's collation, case-insensitive by default), division (numeric scale rules differ),
booleans (bit), functions.
"""
import re

import sqlglot
from sqlglot import exp

from ..mssql.connection import ident as tsql_ident
from ..mssql.tsql import null_test


class Untranslatable(Exception):
    """Why an expression has no T-SQL form of the same meaning, in a few words."""


OPERATORS = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
             exp.And: "AND", exp.Or: "OR", exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Mod: "%"}
NUMBER_TYPES = {exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT,
                exp.DataType.Type.DECIMAL, exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT}
NUMBER = re.compile(r"-?\d+(\.\d+)?")
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

    def _column(self, name):
        for col in self.table.columns:
            if col.name == name:
                if col.data_type not in NUMERIC_COLUMNS:
                    raise Untranslatable(f"column {name} is {col.source_type or col.data_type}, not a number")
                return tsql_ident(name)
        raise Untranslatable(f"{name!r} is not a column of {self.table.name}")
