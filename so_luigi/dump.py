"""Load a Stack Exchange data dump (a folder of per-table XML files) into the StackOverflow schema.

The XML is parsed as a stream (``iterparse``, each row cleared once read), so memory stays flat
whatever the file size, and rows go through the same encoder and COPY path as a replication.
Absent attributes are NULL, except in NOT NULL integer columns (``Posts.ViewCount`` of answers),
which get 0 as SODDI gives them; ``zero_fill=True`` gives 0 for every column SODDI fills
(../shared/STACKOVERFLOW.md). Attributes the schema has no column for are ignored and counted.

PostgreSQL destinations only so far; the CLI command and Luigi task around it are a later issue.
"""
import os
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime

from . import sample, stream, typemap
from .dialects import postgres as pg
from .errors import ConfigError

FILES = {"Badges": "Badges.xml", "Comments": "Comments.xml", "PostLinks": "PostLinks.xml",
         "Posts": "Posts.xml", "Users": "Users.xml", "Votes": "Votes.xml",
         "PostHistory": "PostHistory.xml", "Tags": "Tags.xml"}

SODDI_ZERO = {"Posts": {"AcceptedAnswerId", "AnswerCount", "CommentCount", "FavoriteCount", "LastEditorUserId",
                        "OwnerUserId", "ParentId", "ViewCount"},
              "Users": {"AccountId"}, "Tags": {"ExcerptPostId", "WikiPostId"}}

PARSERS = {"int": int, "datetime": datetime.fromisoformat, "uniqueidentifier": uuid.UUID,
           "bit": lambda v: v == "True"}


def xml_rows(path, table, zero_fill=False, unknown=None):
    """Row tuples of one XML file in the table's column order."""
    cols = table.columns
    names = [c.name for c in cols]
    known = set(names)
    parse = [PARSERS.get(c.data_type, str) for c in cols]
    zero = [(c.data_type == "int" and (not c.nullable or (zero_fill and c.name in SODDI_ZERO.get(table.name, ()))))
            for c in cols]
    for _, elem in ET.iterparse(path, events=("end",)):
        if elem.tag != "row":
            continue
        attrs = elem.attrib
        if unknown is not None:
            for a in attrs:
                if a not in known:
                    unknown[(table.name, a)] += 1
        row = []
        for name, conv, z in zip(names, parse, zero):
            v = attrs.get(name)
            row.append(conv(v) if v is not None else (0 if z else None))
        elem.clear()
        yield tuple(row)


def load_dump(folder, endpoint, post_history=True, tags=True, zero_fill=False, log=print):
    """(Re)create the StackOverflow tables in ``endpoint``'s schema from a dump folder.

    Returns {table: rows}. Tables are dropped and recreated, so a rerun replaces, never appends.
    """
    if endpoint.url.dialect != "postgres":
        raise ConfigError("loading a dump into SQL Server is not available yet; use a postgresql:// URL")
    if not os.path.isdir(folder):
        raise ConfigError(f"dump folder {folder} does not exist")
    names = [n for n in FILES if (post_history or n != "PostHistory") and (tags or n != "Tags")]
    names += [n for n in sample.LOOKUPS]
    unknown = Counter()
    counts = {}
    conn = pg.connect(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {pg.pg_ident(endpoint.schema)}")
            for name in names:
                table = sample.table_def(name, endpoint.schema)
                typemap.map_table(table, "mssql")
                if name in sample.LOOKUPS:
                    rows = iter(sample.LOOKUPS[name])
                else:
                    path = os.path.join(folder, FILES[name])
                    if not os.path.exists(path):
                        log(f"  {name:<12} skipped: {FILES[name]} not in the dump")
                        continue
                    rows = xml_rows(path, table, zero_fill, unknown)
                cur.execute(f"DROP TABLE IF EXISTS {pg.pg_qualified(endpoint.schema, name)}")
                cur.execute(pg.create_table_sql(endpoint.schema, table))
                counts[name], _ = stream.copy_rows_into(cur, endpoint.schema, table, rows)
                for statement in pg.finish_table_sql(endpoint.schema, table):
                    cur.execute(statement)
                log(f"  {name:<12} {counts[name]:>10,} rows")
        conn.commit()
    finally:
        conn.close()
    if unknown:
        log("  ignored attributes (no column in the schema): "
            + ", ".join(f"{t}.{a} ({n})" for (t, a), n in sorted(unknown.items())))
    return counts
