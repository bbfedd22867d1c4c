"""T-SQL expressions (column defaults, CHECK constraints, filtered-index predicates, as SQL
Server's catalog prints them) in PostgreSQL's words, where a faithful form exists.

A whitelist, not a parser of all T-SQL: column names, literals, comparisons, AND/OR/NOT, IS
[NOT] NULL, IN, BETWEEN, LIKE without character classes, arithmetic on numbers, and the
functions in FUNCTIONS. Anything else raises Untranslatable with the reason, and the object
is listed in the report as not carried: never guessed, never dropped silently.
"""
import re

from ..postgres.connection import ident as pg_ident


class Untranslatable(Exception):
    """Why an expression has no faithful PostgreSQL form, in a few words."""


TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<ident>\[(?:[^\]]|\]\])*\])
  | (?P<string>N?'(?:[^']|'')*')
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<op><>|!=|<=|>=|!<|!>|=|<|>|\+|-|\*|/|%|\(|\)|,)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
""", re.X)

KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "LIKE"}

# functions without arguments: T-SQL's spelling -> PostgreSQL's expression. getdate() and
# sysdatetime() are the server's local time without an offset, as LOCALTIMESTAMP is.
NILADIC = {"getdate": "LOCALTIMESTAMP", "sysdatetime": "LOCALTIMESTAMP", "current_timestamp": "LOCALTIMESTAMP",
           "getutcdate": "(now() AT TIME ZONE 'UTC')", "sysutcdatetime": "(now() AT TIME ZONE 'UTC')",
           "sysdatetimeoffset": "now()", "newid": "gen_random_uuid()", "newsequentialid": "gen_random_uuid()"}
# functions of arguments: name -> template over the translated arguments
FUNCTIONS = {"upper": "upper({0})", "lower": "lower({0})", "ltrim": "ltrim({0})", "rtrim": "rtrim({0})",
             "abs": "abs({0})", "len": "length(rtrim({0}))", "isnull": "coalesce({0}, {1})", "coalesce": None}


def tokens(text):
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            raise Untranslatable(f"cannot read {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def translate(text, table, boolean_columns=(), compares_text=True):
    """``text`` (T-SQL) as a PostgreSQL expression over ``table``'s columns. Columns in
    ``boolean_columns`` (bit, which becomes boolean) compare with true/false, not 1/0. With
    ``compares_text`` (a CHECK, a filter; not a default), a text literal in a table with a
    case-insensitive collation is refused: its comparisons would change meaning."""
    toks = tokens(text)
    if compares_text and any(kind == "string" for kind, _ in toks):
        insensitive = [c.name for c in table.columns if re.search(r"_CI(_|$)", c.collation or "", re.I)]
        if insensitive:
            raise Untranslatable(f"it compares text, which SQL Server does by a case-insensitive collation "
                                 f"({table.column(insensitive[0]).collation}) and PostgreSQL does not")
    out, i = _sequence(toks, 0, table, set(boolean_columns))
    if i != len(toks):
        raise Untranslatable(f"unbalanced parentheses in {text}")
    return _joined(out)


def _joined(parts):
    """Tokens with a space between, none before a comma."""
    text = ""
    for part in parts:
        text += part if not text or part == "," else " " + part
    return text


def _sequence(toks, i, table, booleans, stop=(")",)):
    """Translated tokens up to a closing parenthesis or a comma (not consumed)."""
    out = []
    while i < len(toks):
        kind, text = toks[i]
        if kind == "op" and text in stop or (kind == "op" and text == "," and "," in stop):
            return out, i
        if kind == "op" and text == "(":
            inner, i = _sequence(toks, i + 1, table, booleans)
            if i >= len(toks) or toks[i][1] != ")":
                raise Untranslatable("unbalanced parentheses")
            out.append("(" + _joined(inner) + ")")
            i += 1
        elif kind == "op" and text == ",":
            out.append(",")
            i += 1
        elif kind == "ident":
            out.append(_column(text[1:-1].replace("]]", "]"), table))
            i += 1
        elif kind == "string":
            body = text[1:] if text[0] in "nN" else text
            out.append(body)
            i += 1
        elif kind == "number":
            out.append(text)
            i += 1
        elif kind == "op":
            if text in ("!<", "!>"):
                text = ">=" if text == "!<" else "<="
            if text == "!=":
                text = "<>"
            if text == "+" and _stringy(toks, i):
                raise Untranslatable("+ on strings (PostgreSQL joins text with ||)")
            out.append(text)
            i += 1
        else:                                   # a word: keyword, function or bare column name
            word = text.lower()
            following = toks[i + 1][1] if i + 1 < len(toks) else ""
            if text.upper() in KEYWORDS:
                out.append(text.upper())
                if text.upper() == "LIKE" and i + 1 < len(toks) and "[" in toks[i + 1][1]:
                    raise Untranslatable("LIKE with a character class ([...]), which PostgreSQL's LIKE lacks")
                if text.upper() == "LIKE" and i + 1 < len(toks) and "\\" in toks[i + 1][1]:
                    raise Untranslatable("LIKE with a backslash, PostgreSQL's LIKE escape")
                i += 1
            elif word in NILADIC and (word == "current_timestamp" or following == "("):
                if word != "current_timestamp":
                    if i + 2 >= len(toks) or toks[i + 2][1] != ")":
                        raise Untranslatable(f"{text} takes no arguments")
                    i += 2
                out.append(NILADIC[word])
                i += 1
            elif word in FUNCTIONS and following == "(":
                args, i = _arguments(toks, i + 2, table, booleans)
                template = FUNCTIONS[word] or f"{word}(" + ", ".join("{%d}" % n for n in range(len(args))) + ")"
                if len(set(re.findall(r"\{(\d+)\}", template))) != len(args):
                    raise Untranslatable(f"{text} with {len(args)} arguments")
                out.append(template.format(*args))
            elif following == "(":
                raise Untranslatable(f"the function {text}() has no PostgreSQL counterpart here")
            else:
                out.append(_column(text, table))
                i += 1
        _booleans(out, booleans, table)
    return out, i


def _arguments(toks, i, table, booleans):
    args = []
    while True:
        arg, i = _sequence(toks, i, table, booleans, stop=(")", ","))
        args.append(_joined(arg))
        if i >= len(toks):
            raise Untranslatable("unbalanced parentheses")
        if toks[i][1] == ")":
            return args, i + 1
        i += 1


def _stringy(toks, i):
    return any(0 <= j < len(toks) and toks[j][0] == "string" for j in (i - 1, i + 1))


def _column(name, table):
    names = [c.name for c in table.columns]
    if name in names:
        return pg_ident(name)
    same = [n for n in names if n.casefold() == name.casefold()]
    if len(same) != 1:
        raise Untranslatable(f"{name!r} is not a column of {table.name}")
    return pg_ident(same[0])


def _booleans(out, booleans, table):
    """A bit column compared with 0 or 1 (or the reverse): true/false, as its boolean needs."""
    quoted = {pg_ident(c) for c in booleans}
    if len(out) < 3:
        return
    left, op, right = out[-3:]
    if op in ("=", "<>"):
        if left in quoted and _bit(right) is not None:
            out[-1] = _bit(right)
        elif right in quoted and _bit(left) is not None:
            out[-3] = _bit(left)


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
