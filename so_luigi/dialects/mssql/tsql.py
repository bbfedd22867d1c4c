"""T-SQL expressions (column defaults, CHECK constraints, filtered-index predicates, as SQL
Server's catalog prints them) in PostgreSQL's words, where a faithful form exists.

sqlglot reads the T-SQL into a tree; a whitelist over that tree writes PostgreSQL: column names,
literals, comparisons, AND/OR/NOT, IS [NOT] NULL, [NOT] IN, [NOT] BETWEEN, [NOT] LIKE without
character classes, arithmetic on numbers, and the functions in FUNCTIONS. Anything else raises
Untranslatable with the reason, and the object is listed in the report as not carried: never
guessed, never dropped silently.
"""
import re

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from ..postgres.connection import ident as pg_ident, literal as pg_literal


class Untranslatable(Exception):
    """Why an expression has no faithful PostgreSQL form, in a few words."""


# T-SQL functions as written (lower case) -> what they become; the tree says which node each is.
# getdate() and sysdatetime() are the server's local time without an offset, as LOCALTIMESTAMP is.
NILADIC = {"getdate": "LOCALTIMESTAMP", "sysdatetime": "LOCALTIMESTAMP", "current_timestamp": "LOCALTIMESTAMP",
           "getutcdate": "(now() AT TIME ZONE 'UTC')", "sysutcdatetime": "(now() AT TIME ZONE 'UTC')",
           "sysdatetimeoffset": "now()", "newid": "gen_random_uuid()", "newsequentialid": "gen_random_uuid()"}
# functions of arguments: name -> (how many arguments, template over the translated arguments)
FUNCTIONS = {"upper": (1, "upper({0})"), "lower": (1, "lower({0})"), "ltrim": (1, "ltrim({0})"),
             "rtrim": (1, "rtrim({0})"), "abs": (1, "abs({0})"),
             # LEN ignores trailing blanks, PostgreSQL's length counts them
             "len": (1, "length(rtrim({0}))"), "isnull": (2, "coalesce({0}, {1})"), "coalesce": (None, None)}

COMPARISONS = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
               exp.And: "AND", exp.Or: "OR", exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/",
               exp.Mod: "%"}
KEYWORDS = {"IN", "AND", "OR", "NOT", "IS", "LIKE", "BETWEEN", "EXISTS"}


def _read(text):
    """The parsed tree, and the functions the text calls as written (read by sqlglot's tokenizer)."""
    try:
        tokens = sqlglot.tokenize(text, read="tsql")
    except sqlglot.errors.SqlglotError as exc:
        raise Untranslatable(f"cannot read {text!r} as T-SQL: {str(exc).splitlines()[0]}") from None
    try:
        tree = sqlglot.parse_one(text, read="tsql")
    except sqlglot.errors.SqlglotError as exc:
        opened = sum(t.token_type == TokenType.L_PAREN for t in tokens)
        closed = sum(t.token_type == TokenType.R_PAREN for t in tokens)
        why = "unbalanced parentheses" if opened != closed else str(exc).splitlines()[0]
        raise Untranslatable(f"cannot read {text!r} as T-SQL: {why}") from None
    called = [tok.text for tok, nxt in zip(tokens, tokens[1:])
              if nxt.token_type == TokenType.L_PAREN and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", tok.text)
              and tok.text.upper() not in KEYWORDS]
    if any(tok.text.upper() == "CURRENT_TIMESTAMP" for tok in tokens):
        called.append("current_timestamp")
    return tree, called


def translate(text, table, boolean_columns=(), compares_text=True):
    """``text`` (T-SQL) as a PostgreSQL expression over ``table``'s columns. Columns in
    ``boolean_columns`` (bit, which becomes boolean) compare with true/false, not 1/0. With
    ``compares_text`` (a CHECK, a filter; not a default), a text literal in a table with a
    case-insensitive collation is refused: its comparisons would change meaning."""
    tree, called = _read(text)
    for name in called:
        if name.lower() not in NILADIC and name.lower() not in FUNCTIONS:
            raise Untranslatable(f"the function {name}() has no PostgreSQL counterpart here")
    if compares_text and any(_is_text(n) for n in tree.walk()):
        insensitive = [c.name for c in table.columns if re.search(r"_CI(_|$)", c.collation or "", re.I)]
        if insensitive:
            raise Untranslatable(f"it compares text, which SQL Server does by a case-insensitive collation "
                                 f"({table.column(insensitive[0]).collation}) and PostgreSQL does not")
    return _Writer(table, set(boolean_columns), called).write(tree)


EXACT_NUMBERS = {"tinyint", "smallint", "int", "bigint"}
NUMBERS = EXACT_NUMBERS | {"decimal", "numeric", "money", "smallmoney", "float", "real"}


def generated(text, table):
    """A computed column's T-SQL as a PostgreSQL generated column's expression, where it computes
    the same values and is immutable: arithmetic over number columns (division over integers
    only: decimal scale rules differ), abs, isnull, coalesce, number literals; no column that is
    computed itself. Untranslatable otherwise (text: SQL Server's + concatenates; functions of the
    clock; ...). Verification compares the values either way."""
    tree, called = _read(text)
    for name in called:
        if name.lower() not in ("abs", "isnull", "coalesce"):
            raise Untranslatable(f"{name}() in a generated column")
    used = list({id(c): c for c in (_column_of(n.name, table) for n in tree.find_all(exp.Column))}.values())
    for col in used:
        if col.computed:
            raise Untranslatable(f"it uses {col.name}, itself computed (PostgreSQL refuses that)")
        if col.data_type not in NUMBERS:
            raise Untranslatable(f"it uses {col.name} ({col.data_type}): only arithmetic over numbers is translated")
    decimals = any(isinstance(n, exp.Literal) and not n.is_string and not n.this.lstrip("-").isdigit()
                   for n in tree.walk())
    if any(isinstance(n, exp.Div) for n in tree.walk()) and (decimals or any(c.data_type not in EXACT_NUMBERS
                                                                              for c in used)):
        raise Untranslatable("division over decimals, whose scale rules differ")
    if any(_is_text(n) for n in tree.walk()):
        raise Untranslatable("a text literal")
    return _Writer(table, set(), called).write(tree)


def null_test(node, write):
    """``x IS [NOT] NULL`` for each form sqlglot reads it as (NOT over IS, or IS negated), the
    operand written by ``write``; None for any other node."""
    negate = isinstance(node, exp.Not)
    if negate:
        node = node.this
        while isinstance(node, exp.Paren):
            node = node.this
    if not (isinstance(node, exp.Is) and isinstance(node.expression, exp.Null)):
        return None
    negate ^= bool(node.args.get("negate"))
    return f"{write(node.this)} IS {'NOT ' if negate else ''}NULL"


def _is_text(node):
    return isinstance(node, exp.National) or isinstance(node, exp.Literal) and node.is_string


class _Writer:
    """PostgreSQL text of a whitelisted T-SQL tree, one node kind at a time."""

    def __init__(self, table, booleans, called):
        self.table, self.booleans, self.called = table, booleans, [c.lower() for c in called]

    def write(self, node):
        kind = type(node)
        if kind is exp.Paren:
            return f"({self.write(node.this)})"
        if kind is exp.Column:
            return _column(node.name, self.table)
        if kind is exp.Literal:
            return pg_literal(node.this) if node.is_string else node.this
        if kind is exp.National:
            return pg_literal(node.this)
        if kind is exp.Null:
            return "NULL"
        if kind in COMPARISONS:
            return self._binary(node, COMPARISONS[kind])
        if kind is exp.Neg:
            return f"- {self.write(node.this)}"        # never '--', a comment
        tested = null_test(node, self.write)
        if tested:
            return tested
        if kind is exp.Not:
            inner = node.this
            if isinstance(inner, (exp.In, exp.Between)):
                return self.write(inner).replace(" IN (", " NOT IN (", 1) if isinstance(inner, exp.In) else \
                    self.write(inner).replace(" BETWEEN ", " NOT BETWEEN ", 1)
            return f"NOT {self.write(inner)}"
        if kind is exp.In and node.expressions and not node.args.get("query"):
            return f"{self.write(node.this)} IN ({', '.join(self.write(e) for e in node.expressions)})"
        if kind is exp.Between:
            return f"{self.write(node.this)} BETWEEN {self.write(node.args['low'])} AND {self.write(node.args['high'])}"
        if kind is exp.Like and not node.args.get("escape"):
            pattern = node.expression
            said = pattern.this if _is_text(pattern) else ""
            if "[" in said:
                raise Untranslatable("LIKE with a character class ([...]), which PostgreSQL's LIKE lacks")
            if "\\" in said:
                raise Untranslatable("LIKE with a backslash, PostgreSQL's LIKE escape")
            return f"{self.write(node.this)} {'NOT LIKE' if node.args.get('negate') else 'LIKE'} {self.write(pattern)}"
        return self._function(node)

    def _binary(self, node, op):
        left, right = node.this, node.expression
        if op == "+" and (_is_text(left) or _is_text(right)):
            raise Untranslatable("+ on strings (PostgreSQL joins text with ||)")
        a, b = self.write(left), self.write(right)
        if op in ("=", "<>"):            # a bit column against 0 or 1: its boolean's true/false
            if self._boolean(left) and _bit(b) is not None:
                b = _bit(b)
            elif self._boolean(right) and _bit(a) is not None:
                a = _bit(a)
        return f"{a} {op} {b}"

    def _boolean(self, node):
        return isinstance(node, exp.Column) and _column(node.name, self.table) in {pg_ident(c) for c in self.booleans}

    def _function(self, node):
        kind = type(node)
        if kind in (exp.CurrentTimestamp, exp.CurrentTimestampLTZ, exp.Uuid) or \
                kind is exp.Anonymous and node.name.lower() in NILADIC:
            name = node.name.lower() if kind is exp.Anonymous else \
                {exp.CurrentTimestampLTZ: "sysdatetimeoffset", exp.Uuid: "newid"}.get(kind, "getdate")
            given = {k: v for k, v in node.args.items() if v is not None and v != [] and
                     not (kind is exp.Anonymous and k == "this")}     # an anonymous function's name
            if given:
                raise Untranslatable(f"{node.sql(dialect='tsql')}: takes no arguments")
            return NILADIC[name]
        if kind is exp.Trim:
            name = "ltrim" if node.args.get("position") == "LEADING" else "rtrim"
            args = [node.this] + ([node.expression] if node.expression else [])
        elif kind is exp.Length:
            name, arg = "len", node.this
            args = [arg.this if isinstance(arg, exp.Cast) else arg]    # sqlglot reads LEN(x) as LENGTH(CAST(x AS TEXT))
        elif kind is exp.Coalesce:
            name = "isnull" if "isnull" in self.called and "coalesce" not in self.called else "coalesce"
            args = [node.this] + list(node.expressions)
        elif kind in (exp.Upper, exp.Lower, exp.Abs):
            name, args = kind.__name__.lower(), [node.this]
        else:
            raise Untranslatable(f"{node.sql(dialect='tsql')} is not translated")
        count, template = FUNCTIONS[name]
        if count is not None and len(args) != count:
            raise Untranslatable(f"{name} with {len(args)} arguments")
        written = [self.write(a) for a in args]
        return template.format(*written) if template else f"{name}({', '.join(written)})"


def _column_of(name, table):
    """The column a T-SQL name means: the one of that name, else the one equal ignoring case."""
    for col in table.columns:
        if col.name == name:
            return col
    same = [c for c in table.columns if c.name.casefold() == name.casefold()]
    if len(same) != 1:
        raise Untranslatable(f"{name!r} is not a column of {table.name}")
    return same[0]


def _column(name, table):
    return pg_ident(_column_of(name, table).name)


def _bit(text):
    bare = text.strip("() ")
    return {"0": "false", "1": "true"}.get(bare)


def default_for(text, column, table, boolean):
    """A column's DEFAULT: a bit column's constant 0/1 becomes false/true."""
    if boolean:
        constant = _bit(text)
        if constant is not None:
            return constant
    return translate(text, table, [column] if boolean else [], compares_text=False)
