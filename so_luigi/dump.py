"""Build a source database from a Stack Exchange data dump: the StackOverflow2010/2013 schema.

A dump is one site's folder of per-table XML files, or its .7z archive (read with py7zr, one
member at a time into a temporary folder). The XML is parsed as a stream (``iterparse``, the
tree cleared after every row), so memory stays flat whatever the file size, and rows go through
the project's fast paths: the encoder and COPY for PostgreSQL, the TDS bulk copy for SQL Server.

Old and new dump formats both load: columns are filled by attribute name, attributes the schema
has no column for are ignored and reported once per table, absent attributes are NULL, except
in NOT NULL integer columns (``Posts.ViewCount`` of answers), which get 0 as SODDI gives them.
``zero_fill=True`` reproduces SODDI's 0 for every column it fills (../shared/STACKOVERFLOW.md).
Tables are dropped and recreated: a rerun replaces, it never appends.
"""
import os
import shutil
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from contextlib import contextmanager
from datetime import datetime

from .dialects import destination, replace_table
from . import stackoverflow
from .errors import ConfigError, DataError
from .state import markers

FILES = {"Badges": "Badges.xml", "Comments": "Comments.xml", "PostLinks": "PostLinks.xml",
         "Posts": "Posts.xml", "Users": "Users.xml", "Votes": "Votes.xml",
         "PostHistory": "PostHistory.xml", "Tags": "Tags.xml"}

SODDI_ZERO = {"Posts": {"AcceptedAnswerId", "AnswerCount", "CommentCount", "FavoriteCount", "LastEditorUserId",
                        "OwnerUserId", "ParentId", "ViewCount"},
              "Users": {"AccountId"}, "Tags": {"ExcerptPostId", "WikiPostId"}}

PARSERS = {"int": int, "datetime": datetime.fromisoformat, "uniqueidentifier": uuid.UUID,
           "bit": lambda v: v == "True"}


def table_names(post_history=True, tags=True):
    """The dump's tables in load order, then the lookup tables the XML does not carry."""
    names = [n for n in FILES if (post_history or n != "PostHistory") and (tags or n != "Tags")]
    return names + list(stackoverflow.LOOKUPS)


def xml_rows(path, table, zero_fill=False, unknown=None):
    """Row tuples of one XML file in the table's column order, parsed as a stream."""
    cols = table.columns
    names = [c.name for c in cols]
    known = set(names)
    parse = [PARSERS.get(c.data_type, str) for c in cols]
    zero = [c.data_type == "int" and (not c.nullable or (zero_fill and c.name in SODDI_ZERO.get(table.name, ())))
            for c in cols]
    events = ET.iterparse(path, events=("start", "end"))
    _, root = next(events)
    for event, elem in events:
        if event != "end" or elem.tag != "row":
            continue
        attrs = elem.attrib
        if unknown is not None and len(attrs) > len(known & attrs.keys()):
            for a in attrs.keys() - known:
                unknown[(table.name, a)] += 1
        row = []
        try:
            for name, conv, z in zip(names, parse, zero):
                v = attrs.get(name)
                row.append(conv(v) if v is not None else (0 if z else None))
        except ValueError as exc:
            raise DataError(f"{os.path.basename(path)} row Id={attrs.get('Id')}: {exc}") from None
        root.clear()                  # keep memory flat: drop every row once read
        yield tuple(row)


@contextmanager
def dump_files(dump):
    """A folder holding the dump's XML files: ``dump`` itself, or its .7z extracted lazily.

    Yields ``path_of(file_name)``, which returns the XML's path or None when the dump lacks it.
    An archive member is extracted only when asked for and deleted after the next one is asked.
    """
    if os.path.isdir(dump):
        yield lambda name: (os.path.join(dump, name) if os.path.exists(os.path.join(dump, name)) else None)
        return
    if not os.path.isfile(dump):
        raise ConfigError(f"dump {dump} does not exist: give a dump folder or its .7z archive")
    try:
        import py7zr
        archive = py7zr.SevenZipFile(dump, "r")
    except Exception as exc:  # noqa: BLE001 -- py7zr raises several kinds for a bad archive
        raise ConfigError(f"dump {dump} is neither a folder nor a readable .7z archive ({exc})") from None
    members = {os.path.basename(n): n for n in archive.getnames()}
    archive.close()
    scratch = tempfile.mkdtemp(prefix="so_luigi_dump_")
    current = []

    def path_of(name):
        while current:                                   # the previous member is done with
            shutil.rmtree(current.pop(), ignore_errors=True)
        if name not in members:
            return None
        current.append(tempfile.mkdtemp(dir=scratch))
        with py7zr.SevenZipFile(dump, "r") as arch:
            arch.extract(path=current[-1], targets=[members[name]])
        return os.path.join(current[-1], members[name])
    try:
        yield path_of
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_dump(dump, endpoint, post_history=True, tags=True, zero_fill=False, log=print):
    """(Re)create the StackOverflow tables in ``endpoint``'s schema from a dump.

    Returns ({table: rows}, {(table, attribute): rows that had it} of ignored attributes).
    """
    unknown = Counter()
    counts = {}
    with dump_files(dump) as path_of:
        for name in table_names(post_history, tags):
            table = stackoverflow.table_def(name, endpoint.schema)
            if name in stackoverflow.LOOKUPS:
                rows = iter(stackoverflow.LOOKUPS[name])
            else:
                path = path_of(FILES[name])
                if path is None:
                    log(f"  {name:<12} skipped: {FILES[name]} is not in the dump")
                    continue
                rows = xml_rows(path, table, zero_fill, unknown)
            for c in table.columns:
                c.identity = False          # as SODDI loads a dump: ids as they are, no IDENTITY
            counts[name], _ = replace_table(endpoint, table, rows)
            log(f"  {name:<12} {counts[name]:>10,} rows")
    for table in sorted({t for t, _ in unknown}):
        log(f"  {table}: ignored attributes with no column in the schema: "
            + ", ".join(f"{a} ({n:,} rows)" for (t, a), n in sorted(unknown.items()) if t == table))
    return counts, dict(unknown)


def fingerprint(dump, post_history=True, tags=True, zero_fill=False):
    """What a load of this dump with these options is: file names and sizes, and the options."""
    if os.path.isdir(dump):
        files = sorted((n, os.path.getsize(os.path.join(dump, n))) for n in os.listdir(dump) if n.endswith(".xml"))
    elif os.path.isfile(dump):
        files = [(os.path.basename(dump), os.path.getsize(dump))]
    else:
        raise ConfigError(f"dump {dump} does not exist: give a dump folder or its .7z archive")
    opts = f"post_history={post_history} tags={tags} zero_fill={zero_fill}"
    return ";".join(f"{n}:{size}" for n, size in files) + f" | {opts}"


def is_loaded(endpoint, key):
    """Whether this dump (fingerprint ``key``) was loaded into ``endpoint``'s schema."""
    return markers.dump_loaded(destination(endpoint), key)


def mark_loaded(endpoint, key, rows):
    markers.mark_dump(destination(endpoint), key, rows)
