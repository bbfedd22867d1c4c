"""The schema objects a PostgreSQL source holds besides what so_luigi builds itself (schemas,
extensions, types, ordinary tables with their defaults, keys, constraints, indexes and owned
sequences), carried into a PostgreSQL destination the way pgcopydb does: one ``pg_dump -Fc
--schema-only``, its table of contents read with ``pg_restore -l -v``, the chosen entries' SQL
written by ``pg_restore -L``, and that SQL run through psycopg2 in the caller's transaction, so
it commits with the caller's marker row.

Pre-data (functions, aggregates, operators, casts, collations, text search, conversions, sequences
no column owns) must exist before the tables are created; post-data (views, materialized views
and their indexes and refresh, triggers, rules, policies, row security, event triggers,
extended statistics) comes after the rows. A partitioned table's own entries (the parent, its
leaves' attachments, its defaults, keys and indexes, their index attachments) are a third
selection the caller asks for when it builds partitioned tables.

pg_dump ``--schema-only`` has no data section, so the two data-like entries this needs, a
sequence's position (SEQUENCE SET) and a materialized view's REFRESH (MATERIALIZED VIEW DATA),
are read from the source catalog in the dump's snapshot and added to the entries.
"""
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2

from ...config import Endpoint, parse_url
from ...errors import ConfigError, SchemaError, one_line
from .connection import connect, ident, literal, qualified, translate

PG_CLASS = 1259         # pg_class's own oid, fixed in every PostgreSQL

# Every entry type pg_dump writes (9.2 to 18); -l prints them unquoted before the schema, so the
# longest that fits is the type. An unknown one is reported by not_carried().
KINDS = sorted((
    "ACCESS METHOD", "ACL", "ACL LANGUAGE", "AGGREGATE", "BLOB", "BLOB METADATA", "BLOBS", "CAST",
    "CHECK CONSTRAINT", "COLLATION", "COMMENT", "CONSTRAINT", "CONVERSION", "DATABASE",
    "DATABASE PROPERTIES", "DEFAULT", "DEFAULT ACL", "DOMAIN", "ENCODING", "EVENT TRIGGER", "EXTENSION",
    "FK CONSTRAINT", "FOREIGN DATA WRAPPER", "FOREIGN TABLE", "FUNCTION", "INDEX", "INDEX ATTACH",
    "LARGE OBJECT", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "OPERATOR", "OPERATOR CLASS",
    "OPERATOR FAMILY", "POLICY", "PROCEDURAL LANGUAGE", "PROCEDURE", "PUBLICATION", "PUBLICATION TABLE",
    "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY", "RULE", "SCHEMA", "SEARCHPATH", "SECURITY LABEL",
    "SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET", "SERVER", "SHELL TYPE", "STATISTICS",
    "STATISTICS DATA", "STDSTRINGS", "SUBSCRIPTION", "SUBSCRIPTION TABLE", "TABLE", "TABLE ATTACH",
    "TABLE DATA", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE", "TRANSFORM", "TRIGGER", "TYPE", "USER MAPPING", "VIEW"), key=len, reverse=True)

PRE_DATA = {"SCHEMA", "EXTENSION", "TYPE", "SHELL TYPE", "DOMAIN", "FUNCTION", "PROCEDURE", "AGGREGATE", "OPERATOR", "OPERATOR CLASS", "OPERATOR FAMILY", "CAST",
            "COLLATION", "CONVERSION", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY",
            "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "PROCEDURAL LANGUAGE", "TRANSFORM", "ACCESS METHOD",
            "FOREIGN DATA WRAPPER", "SERVER", "USER MAPPING", "FOREIGN TABLE"}
# DEFAULT ACL changes the privileges of everything created after it, so it waits for the end
POST_DATA = {"VIEW", "MATERIALIZED VIEW", "TRIGGER", "RULE", "POLICY", "ROW SECURITY", "EVENT TRIGGER",
             "STATISTICS", "DEFAULT ACL"}
SO_LUIGI = {"TABLE DATA", "DATABASE",
            "DATABASE PROPERTIES", "ENCODING", "STDSTRINGS", "SEARCHPATH"}
TABLE_PARTS = {"DEFAULT", "CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT", "INDEX"}
ATTACH = {"TABLE ATTACH", "INDEX ATTACH"}
# entries about another entry (the first one they depend on), carried with it
ABOUT = {"COMMENT", "SECURITY LABEL", "ACL", "ACL LANGUAGE", "SEQUENCE OWNED BY", "SEQUENCE SET",
         "MATERIALIZED VIEW DATA"}

_PUBLICATION = ("logical replication setup of the source: create it on the destination if the "
                "destination is to publish")
_SUBSCRIPTION = "it would connect to its publisher and replicate into the destination"
_LARGE_OBJECT = "large objects are data, which so_luigi does not copy"
NOT_CARRIED = {
    "PUBLICATION": _PUBLICATION, "PUBLICATION TABLE": _PUBLICATION, "PUBLICATION TABLES IN SCHEMA": _PUBLICATION,
    "SUBSCRIPTION": _SUBSCRIPTION, "SUBSCRIPTION TABLE": _SUBSCRIPTION,
    "BLOB": _LARGE_OBJECT, "BLOBS": _LARGE_OBJECT, "BLOB METADATA": _LARGE_OBJECT, "LARGE OBJECT": _LARGE_OBJECT,
    "STATISTICS DATA": "planner statistics: run ANALYZE on the destination",
}

# pg_restore's own passes: privileges after everything, then event triggers (so none fires
# while the rest is created) and matview refreshes (so they see every function and index)
_LATE = {"ACL": 1, "ACL LANGUAGE": 1, "DEFAULT ACL": 1, "EVENT TRIGGER": 2, "MATERIALIZED VIEW DATA": 2}

# what the SQL pg_restore writes sets first, when the caller passes a plain dict to apply()
PREAMBLE = ("SET LOCAL statement_timeout = 0;", "SET LOCAL lock_timeout = 0;",
            "SET LOCAL idle_in_transaction_session_timeout = 0;", "SET LOCAL standard_conforming_strings = on;",
            "SELECT pg_catalog.set_config('search_path', '', true);", "SET LOCAL check_function_bodies = false;",
            "SET LOCAL xmloption = content;", "SET LOCAL client_min_messages = warning;",
            "SET LOCAL row_security = off;")

_LINE = re.compile(r"(\d+); (\d+) (\d+) (.*)")
_DEPENDS = re.compile(r";\s*depends on:([\d ]*)")
_SET = re.compile(r"SET (\w+) = (.*);")
_SET_CONFIG = re.compile(r"SELECT pg_catalog\.set_config\('(\w+)', (.*), false\);")
# written by pg_restore between entries, before the next one's header: they belong to that one
_BETWEEN = re.compile(r"SET (default_tablespace|default_table_access_method|default_with_oids) = .*;")
_LOCAL = re.compile(r"SET LOCAL (\w+) = |SELECT pg_catalog\.set_config\('(\w+)'")


@dataclass(frozen=True)
class Entry:
    """One entry of the dump's table of contents, as ``pg_restore -l -v`` lists it, with what the
    source catalog says about the relation it is or hangs on."""

    dump_id: int
    kind: str
    schema: str
    name: str
    owner: str
    line: str
    tableoid: int = 0           # the catalog holding the object (pg_class, pg_constraint, ...), 0 if none
    oid: int = 0
    deps: tuple = ()            # dump ids it depends on
    relkind: str = ""           # its own relkind when it is a relation (or the leaf of an ATTACH)
    table: tuple = None         # (schema, name) of the relation it hangs on: index, default, owned sequence
    table_kind: str = ""
    parent: tuple = None        # the partitioned table a partition (or an ATTACH) belongs to

    @property
    def label(self):
        return f"{self.schema}.{self.name}" if self.schema else self.name


DUMP_PREFIX = "so_luigi_schema_"


def _sweep():
    """Remove the dumps of processes that are gone: a run's main process keeps its dump for both
    object steps (PostgresSource.schema_dump) and removes it when it exits, which a kill -9 does
    not let it do. Each dump's name carries its process id."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{DUMP_PREFIX}*_*.dump")):
        pid = os.path.basename(path)[len(DUMP_PREFIX):].split("_", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            try:
                os.unlink(path)
            except OSError:
                pass
        except OSError:
            pass                # alive, another user's: not ours to remove


class Script(dict):
    """{dump_id: SQL}, and the settings the SQL assumes (``preamble``), already transaction-local."""

    def __init__(self, items=(), preamble=PREAMBLE):
        super().__init__(items)
        self.preamble = tuple(preamble)


class Dump:
    """One ``pg_dump -Fc --schema-only`` of the source in a temporary file, removed by close().

    The dump, the catalog reads and the added sequence positions share one snapshot: exported
    here, or the caller's ``snapshot`` (a ``pg_export_snapshot()`` name) when given. With
    ``schemas`` pg_dump leaves out objects that belong to no schema (casts, event triggers,
    publications, foreign data wrappers and servers)."""

    def __init__(self, url, schemas, exclude_schemas=(), snapshot=None, target_version_num=None):
        self.url = parse_url(url, "source")
        self.path = None
        self.entries = []
        self._extra = {}
        conn = connect(Endpoint(self.url, "", "source"))
        try:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                snapshot = _snapshot(conn, cur, snapshot)
                cur.execute("SELECT current_setting('server_version_num')::int")
                version = cur.fetchone()[0]
                cur.execute("SELECT nspname FROM pg_namespace")
                schema_names = {_sanitized(r[0]) for r in cur.fetchall()}
                cur.execute("SELECT rolname FROM pg_roles")
                role_names = {_sanitized(r[0]) for r in cur.fetchall()}
                self.pg_dump, self.pg_restore = find_pg_dump(version, target_version_num)
                _sweep()
                fd, self.path = tempfile.mkstemp(prefix=f"{DUMP_PREFIX}{os.getpid()}_", suffix=".dump")
                os.close(fd)
                cmd = [self.pg_dump, "--format=custom", "--schema-only", "--no-sync", "--encoding=UTF8",
                       f"--file={self.path}"]
                cmd += [f"--schema={ident(s)}" for s in schemas]
                cmd += [f"--exclude-schema={ident(s)}" for s in exclude_schemas]
                cmd += [f"--snapshot={snapshot}"] if snapshot else []
                self._run(cmd + ["--dbname", _libpq_uri(self.url)], "pg_dump")
                listing = self._run([self.pg_restore, "--list", "--verbose", self.path], "pg_restore")
                entries = _parse_list(listing, schema_names, role_names)
                self.entries = self._resolve(cur, entries)
        except psycopg2.Error as exc:
            self.close()
            raise translate(exc, conn) from None
        except BaseException:
            self.close()
            raise
        finally:
            if not conn.closed:
                conn.rollback()
                conn.close()

    def sql(self, entries, owners=False):
        """{dump_id: SQL} of ``entries`` as one ``pg_restore -L`` writes it (owners and privileges
        only with ``owners``; never tablespaces, which so_luigi does not create), cut at the
        header pg_restore writes before each entry; an entry pg_restore writes nothing for (an
        ACL without ``owners``) has none."""
        entries = list(entries)
        script = Script({e.dump_id: self._extra[e.dump_id] for e in entries if e.dump_id in self._extra})
        listed = [e for e in entries if e.dump_id not in self._extra]
        if not listed:
            return script
        fd, list_path = tempfile.mkstemp(prefix="so_luigi_list_", suffix=".txt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(e.line + "\n" for e in listed))
            cmd = [self.pg_restore, "--file=-", "--no-tablespaces", f"--use-list={list_path}", self.path]
            if not owners:
                cmd[1:1] = ["--no-owner", "--no-privileges"]
            text = self._run(cmd, "pg_restore")
        finally:
            os.unlink(list_path)
        preamble, chunks = _split(text)
        script.preamble = tuple(preamble)
        script.update(_match(chunks, listed))
        for e in listed:        # a schema a table of the run made (or a run before) is no refusal
            if e.kind == "SCHEMA" and script.get(e.dump_id, "").lstrip().startswith("CREATE SCHEMA "):
                script[e.dump_id] = script[e.dump_id].replace("CREATE SCHEMA ", "CREATE SCHEMA IF NOT EXISTS ", 1)
        return script

    def step(self, name):
        """The entries of so_luigi's step ``name``: "before" the tables are created (pre-data),
        or "after" the rows (the partitioned tables with their leaves attached, then post-data)."""
        if name == "before":
            return pre_data(self.entries)
        return partition_entries(self.entries, partitioned(self.entries)) + post_data(self.entries)

    def carry(self, conn, entries, owners=False):
        """Create ``entries`` in the destination ``conn``'s open transaction; [(kind, name, why)]
        of those it refused (each rolled back alone)."""
        return apply(conn, self.sql(entries, owners), entries)

    def not_carried(self):
        return not_carried(self.entries) + list(getattr(self, "unreadable", []))

    def close(self):
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)
        self.path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _run(self, cmd, tool):
        env = dict(os.environ, PGAPPNAME=f"so_luigi {tool}")
        if self.url.password:
            env["PGPASSWORD"] = self.url.password
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace")
        if done.returncode:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            said = next((ln for ln in lines if "error:" in ln), lines[0] if lines else f"exit status {done.returncode}")
            said = said.split("error: ", 1)[-1]
            if self.url.password:
                said = said.replace(self.url.password, "***")
            error = ConfigError if "version mismatch" in said else SchemaError
            raise error(f"{tool} of source {self.url.redacted} failed: {said.strip()}")
        return done.stdout

    def _resolve(self, cur, entries):
        """The entries with their relations filled in from the catalog, and the sequence positions
        and matview refreshes pg_dump --schema-only leaves out."""
        cur.execute(RELATIONS_SQL, {"schemas": sorted({e.schema for e in entries if e.schema})})
        rels = {r[0]: r for r in cur.fetchall()}       # oid, schema, name, relkind, populated, hangs_on, parent
        by_name = {(_sanitized(r[1]), _sanitized(r[2])): r for r in rels.values()}
        oids = [e.oid for e in entries if e.oid and e.tableoid not in (0, PG_CLASS)]
        cur.execute(OBJECTS_SQL, {"oids": oids})
        on = {(classid, oid): relid for classid, oid, relid in cur.fetchall()}

        def key(r):
            return (_sanitized(r[1]), _sanitized(r[2])) if r else None

        resolved = []
        for e in entries:
            own = table = parent = None
            if e.kind in ATTACH:
                own = by_name.get((e.schema, e.name))
            elif e.tableoid == PG_CLASS:
                own = rels.get(e.oid)
            elif e.oid:                 # ROW SECURITY names its table by oid, with no catalog
                table = rels.get(on.get((e.tableoid, e.oid)) if e.tableoid else e.oid)
            if own:
                table = rels.get(own[5]) or table
                up = rels.get(own[6])
                parent = rels.get(up[5]) if up and up[3] in "iI" else up     # an index's: its table's
            resolved.append(replace(e, relkind=own[3] if own else "", table=key(table),
                                    table_kind=table[3] if table else "", parent=key(parent)))
        return self._add_data(cur, resolved, rels)

    def _add_data(self, cur, entries, rels):
        """SEQUENCE SET after each sequence and MATERIALIZED VIEW DATA (populated ones) at the end,
        with dump ids after pg_dump's."""
        next_id = max((e.dump_id for e in entries), default=0) + 1
        # a sequence an ordinary table's column owns is so_luigi's (its position too); of the
        # others, those the source role may not read keep their start, and the report says so
        seqs = [e for e in entries if e.kind == "SEQUENCE" and e.oid in rels and e.table_kind != "r"]
        if seqs:
            cur.execute("SELECT oid FROM pg_class WHERE oid = ANY(%s::oid[]) AND NOT has_sequence_privilege(oid, 'SELECT')",
                        ([e.oid for e in seqs],))
            unreadable = {r[0] for r in cur.fetchall()}
            self.unreadable = [("SEQUENCE SET", e.label, "the source's role may not read its position (GRANT SELECT "
                                                         "ON SEQUENCE): it starts where the source's definition says")
                               for e in seqs if e.oid in unreadable]
            seqs = [e for e in seqs if e.oid not in unreadable]
        positions = {}
        for i in range(0, len(seqs), 500):
            cur.execute(" UNION ALL ".join(
                f"SELECT {e.oid}::oid, last_value, is_called FROM {qualified(rels[e.oid][1], rels[e.oid][2])}"
                for e in seqs[i:i + 500]))
            positions.update({oid: (last, called) for oid, last, called in cur.fetchall()})
        out, refresh = [], []
        for e in entries:
            out.append(e)
            r = rels.get(e.oid) if e.tableoid == PG_CLASS else None
            if e.kind == "SEQUENCE" and e.oid in positions:
                last, called = positions[e.oid]
                out.append(self._made(e, "SEQUENCE SET", next_id, f"SELECT pg_catalog.setval("
                                      f"{literal(qualified(r[1], r[2]))}, {last}, {str(called).lower()});"))
                next_id += 1
            elif e.kind == "MATERIALIZED VIEW" and r and r[4]:
                refresh.append(self._made(e, "MATERIALIZED VIEW DATA", next_id,
                                          f"REFRESH MATERIALIZED VIEW {qualified(r[1], r[2])};"))
                next_id += 1
        return out + refresh

    def _made(self, of, kind, dump_id, sql):
        self._extra[dump_id] = sql
        return replace(of, dump_id=dump_id, kind=kind, tableoid=0, oid=0, deps=(of.dump_id,),
                       line=f"{dump_id}; 0 0 {kind} {of.schema or '-'} {of.name} {of.owner}")


# Every relation of the dumped schemas: what an index or an owned sequence hangs on, and the
# table (or index) a partition belongs to.
RELATIONS_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispopulated,
       coalesce(i.indrelid, o.refobjid) AS hangs_on, h.inhparent AS parent
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN LATERAL (SELECT d.refobjid FROM pg_depend d
                   WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid
                     AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
                     AND d.deptype IN ('a', 'i')
                   LIMIT 1) o ON true
LEFT JOIN pg_inherits h ON h.inhrelid = c.oid AND c.relispartition
WHERE n.nspname = ANY(%(schemas)s::text[])
"""

# The relation each entry's object hangs on, by (catalog, oid) as pg_restore -l names it.
OBJECTS_SQL = """
SELECT tableoid, oid, nullif(conrelid, 0) FROM pg_constraint WHERE oid = ANY(%(oids)s::oid[])
UNION ALL SELECT tableoid, oid, adrelid FROM pg_attrdef WHERE oid = ANY(%(oids)s::oid[])
UNION ALL SELECT tableoid, oid, tgrelid FROM pg_trigger WHERE oid = ANY(%(oids)s::oid[])
UNION ALL SELECT tableoid, oid, ev_class FROM pg_rewrite WHERE oid = ANY(%(oids)s::oid[])
UNION ALL SELECT tableoid, oid, polrelid FROM pg_policy WHERE oid = ANY(%(oids)s::oid[])
UNION ALL SELECT tableoid, oid, stxrelid FROM pg_statistic_ext WHERE oid = ANY(%(oids)s::oid[])
"""


def _snapshot(conn, cur, given):
    """The snapshot pg_dump shares: the caller's, imported here, or one exported now; None where
    the server exports none (then dump and catalog reads are a moment apart)."""
    if given:
        cur.execute("SET TRANSACTION SNAPSHOT %s", (given,))
        return given
    try:
        cur.execute("SELECT pg_export_snapshot()")
        return cur.fetchone()[0]
    except psycopg2.Error:
        if conn.closed:
            raise
        conn.rollback()
        return None


def _sanitized(name):
    """A name as pg_dump prints it in -l lines and headers (line breaks as spaces)."""
    return name.replace("\r", " ").replace("\n", " ")


def _libpq_uri(url):
    """The URL for --dbname without its password (that goes by PGPASSWORD, out of ps)."""
    parts = urlsplit(url.raw)
    auth = quote(url.user, safe="") + "@" if url.user else ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(("postgresql", auth + host, parts.path, parts.query, ""))


def _parse_list(text, schema_names, role_names):
    """Entries from ``pg_restore -l -v``: "id; tableoid oid TYPE SCHEMA NAME OWNER", then a
    "depends on" comment. Type, schema and owner may hold spaces, so each is matched against
    the known types and the source's schema and role names."""
    entries = []
    for line in text.splitlines():
        dep = _DEPENDS.match(line)
        if dep and entries:
            entries[-1] = replace(entries[-1], deps=tuple(int(d) for d in dep.group(1).split()))
            continue
        m = _LINE.fullmatch(line)
        if not m:
            continue
        rest = m.group(4)
        kind = next((k for k in KINDS if rest.startswith(k + " ")), rest.split(" ", 1)[0])
        rest = rest[len(kind) + 1:]
        if rest.startswith("- "):
            schema = ""
        else:
            schema = max((s for s in schema_names if rest.startswith(s + " ")), key=len,
                         default=rest.split(" ", 1)[0])
        rest = rest[len(schema or "-") + 1:]
        if rest.endswith(" ") or " " not in rest:
            owner = ""
        else:
            owner = max((r for r in role_names if rest.endswith(" " + r)), key=len, default=rest.rsplit(" ", 1)[-1])
        name = rest[:len(rest) - len(owner)].removesuffix(" ") if owner else rest.removesuffix(" ")
        entries.append(Entry(int(m.group(1)), kind, schema, name, owner, line,
                             tableoid=int(m.group(2)), oid=int(m.group(3))))
    return entries


def _split(text):
    """(preamble, [(header, sql)]) of pg_restore's SQL: the session settings before the first
    entry, made transaction-local (client_encoding is left out: psycopg2 sends the text in the
    connection's encoding), and each entry's SQL after its header; the settings pg_restore writes
    between entries open the SQL of the entry after them."""
    preamble, chunks, body, pending = [], [], None, []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("\\"):                       # \restrict, \unrestrict: psql meta-commands
            i += 1
            continue
        if (line == "--" and i + 2 < len(lines) and lines[i + 2] == "--"
                and re.match(r"-- (Data for )?Name: ", lines[i + 1])):
            if body is not None:
                pending = _trailing_settings(body)
                chunks[-1] = (chunks[-1][0], "\n".join(body).strip())
            body = [_local(s) for s in pending]
            chunks.append((lines[i + 1][3:].removeprefix("Data for "), None))
            pending = []
            i += 3
            continue
        if body is None:
            if line and not line.startswith("--") and not line.startswith("SET client_encoding"):
                preamble.append(_local(line))
        else:
            body.append(line)
        i += 1
    if body is not None:
        while body and (not body[-1].strip() or body[-1].startswith("--")):
            body.pop()                                  # "-- PostgreSQL database dump complete"
        chunks[-1] = (chunks[-1][0], "\n".join(body).strip())
    return preamble, chunks


def _trailing_settings(body):
    found = []
    while body and (not body[-1].strip() or _BETWEEN.fullmatch(body[-1])):
        line = body.pop()
        if line.strip():
            found.insert(0, line)
    return found


def _local(statement):
    m = _SET.fullmatch(statement)
    if m:
        return f"SET LOCAL {m.group(1)} = {m.group(2)};"
    m = _SET_CONFIG.fullmatch(statement)
    if m:
        return f"SELECT pg_catalog.set_config('{m.group(1)}', {m.group(2)}, true);"
    return statement


def _match(chunks, entries):
    """{dump_id: sql}: each header given to the first entry not yet matched whose name, type
    and schema it starts with (pg_restore defers ACLs and refreshes to later passes, so the
    order alone does not tell)."""
    waiting = {}
    for e in entries:
        waiting.setdefault(f"Name: {e.name}; Type: {e.kind}; Schema: {e.schema or '-'}; Owner: ", []).append(e)
    out = {}
    for header, sql in chunks:
        at = header.find("; Owner: ")
        while at >= 0 and not waiting.get(header[:at + 9]):
            at = header.find("; Owner: ", at + 1)
        if at < 0:
            raise SchemaError(f"pg_restore wrote an entry so_luigi cannot place: {header}")
        out[waiting[header[:at + 9]].pop(0).dump_id] = sql
    return out


def _place(e, by_id, seen=()):
    """(where, partitioned table, reason): where is 'pre', 'post', 'partition', 'so_luigi' (built
    by so_luigi itself, left out) or 'not carried'."""
    kind = e.kind
    if kind in ABOUT:
        of = by_id.get(e.deps[0]) if e.deps else None
        if of is None or of.dump_id in seen:
            if kind in ("ACL", "ACL LANGUAGE"):     # privileges on what pg_dump does not create (public)
                return "so_luigi", None, ""
            return "not carried", None, "it belongs to an object outside the dump"
        return _place(of, by_id, seen + (e.dump_id,))
    if kind in NOT_CARRIED:
        return "not carried", None, NOT_CARRIED[kind]
    if kind in SO_LUIGI:
        return "so_luigi", None, ""
    if kind in PRE_DATA:
        return "pre", None, ""
    if kind in POST_DATA:
        return "post", None, ""
    if kind in ATTACH:
        return "partition", e.parent, ""
    if kind == "TABLE":
        return _follow(e.relkind, (e.schema, e.name), "so_luigi")
    if kind in TABLE_PARTS:
        return _follow(e.table_kind, e.table, "so_luigi")
    if kind == "SEQUENCE":
        return _follow(e.table_kind, e.table, "pre")
    return "not carried", None, f"so_luigi does not know pg_dump's {kind!r} entries"


def _follow(relkind, table, otherwise):
    """Where a relation's entry goes, by the relation's kind: an ordinary table is so_luigi's."""
    where = {"r": "so_luigi", "p": "partition", "v": "post", "m": "post", "f": "pre"}.get(relkind, otherwise)
    return where, table if where == "partition" else None, ""


def _pass(e, by_id):
    """pg_restore's pass: 0 main, 1 privileges, 2 event triggers and matview refreshes (and what
    is about them)."""
    late = _LATE.get(e.kind, 0)
    if not late and e.kind in ABOUT and e.deps and e.deps[0] in by_id:
        return _LATE.get(by_id[e.deps[0]].kind, 0)
    return late


def _select(entries, where, parents=None):
    entries = list(entries)
    by_id = {e.dump_id: e for e in entries}
    chosen = []
    for i, e in enumerate(entries):
        w, parent, _ = _place(e, by_id)
        if w == where and (parents is None or parent in parents):
            chosen.append((_pass(e, by_id), i, e))
    return [e for _, _, e in sorted(chosen, key=lambda t: t[:2])]


def pre_data(entries):
    """What must exist before so_luigi creates the tables, in restore order."""
    return _select(entries, "pre")


def post_data(entries):
    """What comes after every row is loaded, in restore order (refreshes last)."""
    return _select(entries, "post")


def partition_entries(entries, parents):
    """The entries of the partitioned tables ``parents`` ({(schema, name)}): each parent, its
    partitions' attachments, its defaults, keys, constraints and indexes, the attachments of its
    partitions' indexes, and what is about them (comments, owned sequences). Pass every level
    of a sub-partitioned table (see partitioned())."""
    return _select(entries, "partition", set(parents))


def partitioned(entries):
    """{(schema, name)} of every partitioned table in the dump."""
    return {(e.schema, e.name) for e in entries if e.kind == "TABLE" and e.relkind == "p"}


def left_out(entries):
    """What so_luigi builds itself (schemas, types, ordinary tables and their parts), in dump order."""
    entries = list(entries)
    by_id = {e.dump_id: e for e in entries}
    return [e for e in entries if _place(e, by_id)[0] == "so_luigi"]


def not_carried(entries):
    """[(kind, "schema.name", reason)] of what is deliberately not carried."""
    entries = list(entries)
    by_id = {e.dump_id: e for e in entries}
    out = []
    for e in entries:
        where, _, reason = _place(e, by_id)
        if where == "not carried":
            out.append((e.kind, e.label, reason))
    return out


def apply(conn, sql_by_id, entries):
    """Run each entry's SQL on ``conn`` inside the caller's transaction (the caller commits), each
    in its own savepoint: one the destination refuses is rolled back alone and returned as
    (kind, "schema.name", the server's message); the others stay.

    pg_restore's session settings (search_path '', check_function_bodies off, ...) are set
    transaction-local (SET LOCAL, set_config(..., true)) and put back at the end, so neither the
    rest of the caller's transaction nor the session after its commit keeps them."""
    if conn.autocommit:
        raise ValueError("objects.apply() runs in the caller's transaction: turn autocommit off")
    work = [(e, sql_by_id[e.dump_id]) for e in entries if sql_by_id.get(e.dump_id)]
    preamble = list(getattr(sql_by_id, "preamble", PREAMBLE))
    names = {a or b for s in preamble + [sql for _, sql in work] for a, b in _LOCAL.findall(s)}
    failed = []
    with conn.cursor() as cur:
        cur.execute("SELECT name, current_setting(name, true) FROM unnest(%s::text[]) name", (sorted(names),))
        before = [(name, value) for name, value in cur.fetchall() if value is not None]
        for statement in preamble:
            _in_savepoint(cur, conn, statement)         # a newer pg_dump's setting an older server lacks
        for e, sql in work:
            lines = sql.split("\n")
            while lines and _LOCAL.match(lines[0]):     # kept for the entries after, as pg_restore does
                _in_savepoint(cur, conn, lines.pop(0))
            error = _in_savepoint(cur, conn, "\n".join(lines))
            if error:
                failed.append((e.kind, e.label, error))
        for name, value in before:
            cur.execute("SELECT set_config(%s, %s, true)", (name, value))
    return failed


def _in_savepoint(cur, conn, sql):
    """Run ``sql``; on error roll back to before it and return the server's first line."""
    cur.execute("SAVEPOINT so_luigi_object")
    try:
        cur.execute(sql)
    except psycopg2.Error as exc:
        try:
            cur.execute("ROLLBACK TO SAVEPOINT so_luigi_object")
        except psycopg2.Error:
            raise translate(exc, conn) from None
        diag = getattr(exc, "diag", None)
        return (diag and diag.message_primary) or one_line(exc.pgerror or exc)
    finally:
        if not conn.closed and conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
            cur.execute("RELEASE SAVEPOINT so_luigi_object")
    return None


def _version(path):
    """pg_dump's version as (major,) or (9, minor) before 10, with the full version for sorting."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?(?:\.(\d+))?", out)
    if not m:
        return None
    return tuple(int(x) for x in m.groups() if x is not None)


def _major(version):
    return version[:1] if version[0] >= 10 else version[:2]


def _server_major(num):
    return (num // 10000,) if num >= 100000 else (num // 10000, num // 100 % 100)


def _shown(major):
    return ".".join(str(x) for x in major)


def _bindirs():
    """Folders that may hold pg_dump: PATH's (not Debian's pg_wrapper, which picks a version by
    cluster: the real ones are in /usr/lib/postgresql), Debian's, and the pgserver package's."""
    found = []
    on_path = shutil.which("pg_dump")
    if on_path and os.path.basename(os.path.realpath(on_path)) != "pg_wrapper":
        found.append(os.path.dirname(on_path))
    found += sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    spec = importlib.util.find_spec("pgserver")        # found without importing it
    for where in (spec.submodule_search_locations or []) if spec else []:
        found.append(os.path.join(where, "pginstall", "bin"))
    return found


def find_pg_dump(server_version_num, target_version_num=None):
    """(pg_dump, pg_restore) from one folder, whose major version is the server's or newer (an
    older pg_dump refuses a newer server).

    Of those, the closest to the newer of source and destination (``target_version_num``) is
    chosen, newest minor first: its SQL is in the dialect the destination speaks, where a newer
    pg_dump may write settings an older server refuses (17's transaction_timeout)."""
    need = _server_major(server_version_num)
    want = max(need, _server_major(target_version_num)) if target_version_num else need
    tools = []
    for i, folder in enumerate(_bindirs()):
        pg_dump, pg_restore = os.path.join(folder, "pg_dump"), os.path.join(folder, "pg_restore")
        if os.access(pg_dump, os.X_OK) and os.access(pg_restore, os.X_OK):
            version = _version(pg_dump)
            if version:
                tools.append((version, -i, pg_dump, pg_restore))
    fits = [t for t in tools if _major(t[0]) >= need]
    if fits:
        best = [t for t in fits if _major(t[0]) >= want] or fits
        top = min(_major(t[0]) for t in best)
        return max(t for t in best if _major(t[0]) == top)[2:]
    shown = _shown(need)
    if tools:
        newest = max(tools)
        found = f"the newest pg_dump found is {_shown(newest[0][:len(_major(newest[0]))])} ({newest[2]})"
    else:
        found = "no pg_dump was found on PATH, in /usr/lib/postgresql/*/bin or in the pgserver package"
    raise ConfigError(f"source server is PostgreSQL {shown} but {found}: install postgresql-client-{shown} "
                      f"or put a pg_dump >= {shown} on PATH")
