"""Deterministic StackOverflow-shaped sample data, for the demo, the tests and the benchmarks.

The nine tables of StackOverflow2010 (optionally PostHistory) with their real SQL Server column
types (../shared/STACKOVERFLOW.md). ``scale=1.0`` gives the StackOverflow2010 row counts; the
lookup tables always hold their real rows. The same (scale, seed) always gives the same rows.

The data carries what breaks copy tools: ids with gaps and the -1 Community user, NULLs beside
empty strings, non-ASCII text (and one character above U+FFFF in unbounded text), tabs, newlines,
CR, backslashes, ``\\N`` and quotes inside text, datetime milliseconds (.xx0/.xx3/.xx7), and extreme
values (int limits, 1753-01-01, 9999-12-31 23:59:59.997).
"""
import random
import uuid
from datetime import datetime, timedelta

from ..stackoverflow import LOOKUPS, ROWS_2010, SCHEMA, table_def, table_names  # noqa: F401 -- part of the sample

WORDS = ("the a to is in of and for how I it with this that on can not be use you do my SQL "
         "python java c# query table index select join where null value string error file list "
         "function return class object array server database performance question answer").split()
# what breaks copy tools, mixed into text at a low rate
SPICE = ["naïve", "café", "Zürich", "日本語", "Ελληνικά", "привет", "\t", "\n", "\r\n", "\r", "\\",
         "\\N", "\\.", "\\t", '"quoted"', "'single'", ",", ";", "|", "<p>", "&amp;", "</code>", "O'Brien"]
NAMES = ["Jon Skeet", "Marc Gravell", "José", "Zoë", "Łukasz", "Ольга", "山田太郎", "Ana María",
         "O'Neil", "user", "dev", "coder", "Mr. \"Quote\"", "back\\slash"]
LOCATIONS = ["São Paulo", "Zürich", "東京", "New York, NY", "London", "Kraków", "Reykjavík", "Seattle"]
TAGS = ["python", "sql", "c#", "java", "javascript", "sql-server", "postgresql", "luigi", "c++", ".net"]

START = datetime(2008, 7, 31)
SPAN = int((datetime(2010, 12, 31) - START).total_seconds())
DATETIME_MIN = datetime(1753, 1, 1)
DATETIME_MAX = datetime(9999, 12, 31, 23, 59, 59, 997000)


def row_count(name, scale):
    if name in LOOKUPS:
        return len(LOOKUPS[name])
    return max(1, round(ROWS_2010[name] * scale))


class Gen:
    """Random helpers over one seeded generator."""

    def __init__(self, seed):
        self.r = random.Random(seed)

    def when(self):
        r = self.r
        # datetime ticks are 1/300 s: milliseconds end in 0, 3 or 7
        ms = r.randrange(1000) // 10 * 10 + r.choice((0, 3, 7))
        return START + timedelta(seconds=r.randrange(SPAN), milliseconds=ms)

    def day(self):
        return START + timedelta(days=self.r.randrange(SPAN // 86400))

    def text(self, words, unbounded=False):
        r = self.r
        parts = r.choices(WORDS, k=words)
        if r.random() < 0.3:
            for _ in range(1 + words // 40):
                parts[r.randrange(len(parts))] = r.choice(SPICE)
        if unbounded and r.random() < 0.01:
            parts.append("😀")          # above U+FFFF: only where no length limit applies
        return " ".join(parts)

    def bounded(self, words, limit):
        return self.text(words)[:limit]

    def ids(self, count, start=1):
        """Increasing ids with gaps, like deleted rows leave."""
        r = self.r
        out, i = [], start
        for _ in range(count):
            out.append(i)
            i += 1 if r.random() > 0.03 else r.randint(2, 60)
        return out


def rows(name, scale=0.01, seed=42):
    """Rows of one table as tuples in column order (Id first), deterministic for (scale, seed)."""
    if name in LOOKUPS:
        yield from LOOKUPS[name]
        return
    g = Gen(f"{seed}:{name}")
    r = g.r
    n = row_count(name, scale)
    n_users = row_count("Users", scale)
    n_posts = row_count("Posts", scale)
    user_ids = Gen(f"{seed}:Users").ids(n_users)
    post_ids = Gen(f"{seed}:Posts").ids(n_posts)
    ids = Gen(f"{seed}:{name}:ids").ids(n, start=1) if name not in ("Users", "Posts") else None

    def user():
        return user_ids[int(len(user_ids) * r.random() ** 2)]  # active users write most

    def post():
        return post_ids[r.randrange(len(post_ids))]

    if name == "Users":
        for k, uid in enumerate(user_ids):
            if k == 0:
                uid = -1                                    # the Community user
            about = None if r.random() < 0.4 else ("" if r.random() < 0.2 else g.text(r.randint(3, 80), True))
            rep = 2147483647 if k == 1 else int(1 + r.paretovariate(1.2)) if r.random() < 0.5 else 1
            yield (uid, about, None if r.random() < 0.7 else r.randint(13, 90), g.when(),
                   (r.choice(NAMES) + ("" if r.random() < 0.5 else f" {uid}"))[:40],
                   r.randint(0, 50), None, g.when(),
                   None if r.random() < 0.5 else r.choice(LOCATIONS), rep, r.randint(0, 500),
                   r.randint(0, 10000), None if r.random() < 0.6 else ("" if r.random() < 0.3 else
                                                                      f"https://example.com/{uid}"),
                   0 if r.random() < 0.05 else uid + 1000)
    elif name == "Posts":
        for k, pid in enumerate(post_ids):
            question = r.random() < 0.45
            ptype = 1 if question else (2 if r.random() < 0.98 else r.randint(3, 8))
            created = DATETIME_MIN if k == 0 else g.when()
            body = "" if r.random() < 0.002 else g.text(int(r.lognormvariate(4.3, 0.8)) + 1, True)
            score = (-2147483648, 2147483647)[k % 2] if k in (1, 2) else int(r.gauss(2, 6))
            yield (pid,
                   (post() if r.random() < 0.5 else 0) if question else 0,
                   r.randint(0, 12) if question else 0,
                   body,
                   g.when() if question and r.random() < 0.1 else None,
                   r.randint(0, 20),
                   g.when() if r.random() < 0.01 else None,
                   created,
                   r.randint(0, 50) if question and r.random() < 0.3 else 0,
                   DATETIME_MAX if k == 3 else g.when(),
                   g.when() if r.random() < 0.4 else None,
                   r.choice(NAMES)[:40] if r.random() < 0.02 else None,
                   user() if r.random() < 0.4 else 0,
                   user() if r.random() < 0.97 else 0,
                   0 if question else post(),
                   ptype, score,
                   "".join(f"<{t}>" for t in r.sample(TAGS, r.randint(1, 5))) if question else None,
                   g.bounded(r.randint(3, 15), 250) if question else None,
                   r.randint(1, 100000) if question else 0)
    elif name == "Comments":
        for cid in ids:
            yield (cid, g.when(), post(), None if r.random() < 0.05 else r.randint(-5, 100),
                   "" if r.random() < 0.001 else g.bounded(r.randint(2, 90), 600),
                   None if r.random() < 0.03 else user())
    elif name == "Badges":
        names = ["Teacher", "Student", "Supporter", "Editor", "Autobiographer", "Critic",
                 "Nice Answer", "Popular Question", "Necromancer", "Yearling", "c#", "日本語"]
        for bid in ids:
            yield (bid, r.choice(names), user(), g.when())
    elif name == "Votes":
        for vid in ids:
            vtype = r.choices((2, 3, 1, 5, 8, 9, 10, 6), (60, 10, 10, 8, 1, 1, 5, 5))[0]
            yield (vid, post(), user() if vtype in (5, 8) else None,
                   r.choice((50, 100, 200, 500)) if vtype in (8, 9) else None, vtype, g.day())
    elif name == "PostLinks":
        for lid in ids:
            yield (lid, g.when(), post(), post(), 1 if r.random() < 0.8 else 3)
    elif name == "PostHistory":
        for hid in ids:
            htype = r.choice((1, 2, 3, 4, 5, 6, 10, 24, 50, 52))
            yield (hid, htype, post(), uuid.UUID(int=r.getrandbits(128), version=4), g.when(),
                   None if r.random() < 0.05 else user(),
                   r.choice(NAMES)[:40] if r.random() < 0.02 else None,
                   None if r.random() < 0.7 else ("" if r.random() < 0.1 else g.text(r.randint(1, 20))),
                   None if htype in (10, 50, 52) and r.random() < 0.5 else
                   g.text(int(r.lognormvariate(4.0, 0.8)) + 1, True))
    else:
        raise KeyError(f"unknown sample table {name!r}; known: {', '.join(SCHEMA)}")


# --- writers ------------------------------------------------------------------------------------

def fill(endpoint, scale=0.01, seed=42, post_history=False, names=None, log=print):
    """(Re)create the sample tables in ``endpoint``'s schema: in PostgreSQL typed as so_luigi maps
    SQL Server's, in SQL Server as declared (with IDENTITY). Returns the rows written."""
    from ..dialects import replace_table
    total = 0
    for name in names or table_names(post_history):
        count, nbytes = replace_table(endpoint, table_def(name, endpoint.schema), rows(name, scale, seed))
        total += count
        log(f"  {name:<12} {count:>10,} rows" + ("" if nbytes is None else f" {nbytes / 1e6:>9.1f} MB"))
    return total


def mssql_create_sql(table, primary_key=True):
    from ..dialects.mssql.ddl import declared_table_sql
    return declared_table_sql(table.schema, table, primary_key)
