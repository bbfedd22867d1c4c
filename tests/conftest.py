"""Fixtures: one real PostgreSQL for the session (started here, stopped after), and a fresh
source and destination database per test."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid

import psycopg2
import pytest

from so_luigi.testing import embedded
from so_luigi.config import Endpoint, parse_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMP = os.path.join(ROOT, "..", "shared", "data", "stackexchange", "bicycles.meta.stackexchange.com")


def paused_at(cmd, env, point, timeout=300):
    """``cmd`` started in its own process group with ``SO_LUIGI_PAUSE_AT=point``, returned once it
    says it paused there (kill it with ``kill_group``); the test fails with the run's last words
    if it never does. The wait is long because only a broken run uses it up: on a loaded machine
    a healthy one has taken over two minutes to get there."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, "SO_LUIGI_PAUSE_AT": point}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    paused, said = threading.Event(), []

    def read():
        for line in proc.stderr:
            said.append(line)
            if f"paused at {point}" in line:
                paused.set()
    threading.Thread(target=read, daemon=True).start()
    if not paused.wait(timeout):
        kill_group(proc)
        pytest.fail(f"the run never reached {point}: " + "".join(said[-30:]))
    return proc


def kill_group(proc):
    """SIGKILL to a run and every process it started (Luigi's workers), as a kill -9 of the job."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="session")
def cluster():
    c = embedded.start()
    yield c
    c.stop()


class Pair:
    """A source and a destination database on the session's server."""

    def __init__(self, cluster):
        tag = uuid.uuid4().hex[:8]
        self.source_url = cluster.create_database(f"src_{tag}")
        self.target_url = cluster.create_database(f"dst_{tag}")
        self.cluster = cluster
        # bulk files: readable by the server's own user, so server-side COPY FROM file works
        self.bulk_dir = tempfile.mkdtemp(prefix=f"so_bulk_{tag}_")
        os.chmod(self.bulk_dir, 0o755)

    def env(self, **extra):
        # a failed run's snapshot holder lets go a minute after (not the default half hour)
        env = dict(os.environ, SO_SOURCE_URL=self.source_url, SO_TARGET_URL=self.target_url,
                   SO_BULK_DIR=self.bulk_dir, PYTHONUNBUFFERED="1", SO_SNAPSHOT_GRACE_MINUTES="1")
        for k in ("SO_SOURCE_SCHEMA", "SO_TARGET_SCHEMA", "SO_LUIGI_DEBUG", "SO_BULK_SERVER_DIR",
                  "SO_BULK_KEEP_FILES", "LUIGI_CONFIG_PATH"):
            env.pop(k, None)
        env.update(extra)
        return env

    def source(self, schema="public"):
        return Endpoint(parse_url(self.source_url), schema, "source")

    def target(self, schema="public"):
        return Endpoint(parse_url(self.target_url), schema, "target")

    def query(self, which, sql, params=None):
        conn = psycopg2.connect(self.source_url if which == "source" else self.target_url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.commit()
            conn.close()

    def run(self, *args, env=None, timeout=600):
        """`luigi --module so_luigi ReplicateAll --local-scheduler ...` from the repository root."""
        cmd = [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
               *args]
        return subprocess.run(cmd, cwd=ROOT, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture
def pair(cluster, monkeypatch):
    p = Pair(cluster)
    for k, v in p.env().items():
        if k.startswith("SO_"):
            monkeypatch.setenv(k, v)
    monkeypatch.delenv("SO_SOURCE_SCHEMA", raising=False)
    monkeypatch.delenv("SO_TARGET_SCHEMA", raising=False)
    yield p
    shutil.rmtree(p.bulk_dir, ignore_errors=True)


def table_fingerprint(url, schema, table, key="Id"):
    """Rows in key order through PostgreSQL's own COPY text output, hashed: independent of so_luigi."""
    conn = psycopg2.connect(url)
    digest = hashlib.sha256()
    rows = 0

    class Sink:
        def write(self, data):
            nonlocal rows
            rows += 1
            digest.update(data)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TimeZone = 'UTC'; SET extra_float_digits = 1")
            from so_luigi.dialects.postgres.connection import ident as pg_ident, qualified as pg_qualified
            cur.copy_expert(f"COPY (SELECT * FROM {pg_qualified(schema, table)} ORDER BY {pg_ident(key)}) "
                            "TO STDOUT", Sink())
    finally:
        conn.close()
    return rows, digest.hexdigest()


def columns_of(url, schema, table):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("""SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity
                           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
                           ORDER BY a.attnum""", (schema, table))
            return cur.fetchall()
    finally:
        conn.close()


def assert_same_tables(pair, tables, source_schema="public", target_schema="public"):
    """Every table: same columns (name, type, NOT NULL, identity) and the same rows, byte for byte."""
    for t in tables:
        assert columns_of(pair.source_url, source_schema, t) == columns_of(pair.target_url, target_schema, t), t
        src = table_fingerprint(pair.source_url, source_schema, t)
        dst = table_fingerprint(pair.target_url, target_schema, t)
        assert src == dst, f"{t}: source {src} != destination {dst}"
        assert src[0] > 0, t


def frozen_pages(url, schema="public"):
    """{relation: (pages, all_visible, all_frozen)} of every heap in the schema (pg_visibility)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_visibility")
            cur.execute("""SELECT c.relname, pg_relation_size(c.oid) / current_setting('block_size')::int,
                                  v.all_visible, v.all_frozen
                           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                                LATERAL pg_visibility_map_summary(c.oid) v
                           WHERE n.nspname = %s AND c.relkind = 'r'""", (schema,))
            rows = {r[0]: tuple(r[1:]) for r in cur.fetchall()}
        conn.commit()
        return rows
    finally:
        conn.close()


# ---- the "lines" checksum (PostgreSQL into SQL Server): a table of every kind of column, and its spec

LINE_TYPES = ("a int2, b int4, c int8, d bool, e numeric(12,3), f money, g real, h double precision, "
              "i bytea, j uuid, k date, l timestamp(3), m timestamptz, n time, o char(5), p text, "
              "q varchar(20), r jsonb, s int4[], t mood, u price, v inet, w interval")
LINE_ROWS = (
    "1, -2, 9223372036854775807, true, -0.5, 1234.5, 1.1, 0.1, '\\x00ff10', "
    "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '0999-01-02', '2010-01-02 03:04:05.678', "
    "'2010-01-02 03:04:05.123456+05:30', '23:59:59.999999', 'ab', E'h\u00e9llo \U0001F600\\ttab\\\\ \\\\N', "
    "'', '{\"b\": [1, 2]}', '{1,NULL,3}', 'sad', 12.3, '10.0.0.1/8', '1 day 02:03:04'",
    "0, 0, 0, false, 0, 0, -0.0, 1e300, '', '00000000-0000-0000-0000-000000000000', '2010-01-01', "
    "'2010-01-01', '2010-01-01 00:00:00+00', '00:00:00', 'abcde', ' ', 'x', 'null', '{}', 'happy', 0, "
    "'::1', '0'",
    ", ".join(["NULL"] * 23),
)


LINES_TABLE_SQL = ("DROP TABLE IF EXISTS \"L\"; DROP TYPE IF EXISTS mood; DROP DOMAIN IF EXISTS price; "
                   "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE DOMAIN price AS numeric(10,2); "
                   f'CREATE TABLE "L" ({LINE_TYPES}); ' + "".join(f'INSERT INTO "L" VALUES ({r}); ' for r in LINE_ROWS))


def lines_reference(cur):
    """The "lines" text of each row of "L" (LINES_TABLE_SQL), made in Python from the values as
    the copy reads them (money as numeric, arrays as JSON, a domain as its base type)."""
    kinds = [spec.split(" ", 1)[1] for spec in LINE_TYPES.split(", ")]
    reads = {"money": '"f"::numeric', "int4[]": 'array_to_json("s")::text', "mood": '"t"::text', "inet": '"v"::text',
             "interval": '"w"::text', "jsonb": '"r"::text', "price": '"u"::numeric(10,2)'}
    select = ", ".join(reads.get(kind, f'"{spec.split()[0]}"') for spec, kind in zip(LINE_TYPES.split(", "), kinds))
    cur.execute(f'SELECT {select} FROM "L"')
    return [line_reference(r, kinds) for r in cur.fetchall()]


def lines_sum(lines):
    """The checksum of those texts: the signed first 8 bytes of each one's md5 (UTF-8), summed."""
    import hashlib
    return sum(int.from_bytes(hashlib.md5(line.encode()).digest()[:8], "big", signed=True) for line in lines)


def line_reference(row, types):
    """A row's "lines" text made in Python from the values psycopg2 returns: the spec the SQL of
    both servers implements, written a second, independent way."""
    import datetime as dt
    import hashlib
    import struct
    from decimal import Decimal

    def text(v, kind):
        if v is None:
            return "\\N"
        if kind == "bool":
            return "1" if v else "0"
        if kind == "money":
            return format(Decimal(v).quantize(Decimal("0.0001")), "f")
        if kind in ("real", "double precision"):
            fmt = ">f>i" if kind == "real" else ">d>q"
            return str(struct.unpack(fmt[2:], struct.pack(fmt[:2], v))[0])
        if kind == "bytea":
            return f"{len(v)}:{int.from_bytes(hashlib.md5(v).digest()[:8], 'big', signed=True)}"
        if kind.startswith("timestamptz"):      # microseconds since 2000-01-01 UTC
            return str((v - dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1))
        if kind.startswith("timestamp"):
            return str((v - dt.datetime(2000, 1, 1)) // dt.timedelta(microseconds=1))
        if kind == "time":                      # microseconds since midnight
            return str((v.hour * 3600 + v.minute * 60 + v.second) * 10 ** 6 + v.microsecond)
        if kind == "date":                      # days since 2000-01-01
            return str((v - dt.date(2000, 1, 1)).days)
        if kind.startswith("char"):
            return v.rstrip(" ")
        return str(v)
    return "\x1f".join(text(v, kind) for v, kind in zip(row, types))
