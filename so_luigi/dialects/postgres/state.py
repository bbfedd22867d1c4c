"""The marker tables' SQL that is PostgreSQL's own (``so_luigi.state`` writes the rest once, in
SQL both databases speak): types and DDL for ``state.schema``, the clock, transaction-scoped
locks, elapsed seconds, and asking the catalog whether a table exists."""
import psycopg2

from .connection import ident, literal

TYPES = {"id": "text", "name": "text", "text": "text", "int": "integer", "bigint": "bigint",
         "float": "double precision", "checksum": "numeric", "json": "jsonb", "time": "timestamptz"}

now = "clock_timestamp()"
# when a table's first partition began loading (else when it was planned), for rates
load_started = "coalesce(min(l.loaded_at - make_interval(secs => l.seconds)), t.planned_at)"
# the catalog's answer to "is there such a table", for the name as the SQL spells it
exists_sql = "SELECT to_regclass(%s) IS NOT NULL"
lost = (psycopg2.OperationalError, psycopg2.InterfaceError)


def seconds_since(column):
    return f"extract(epoch FROM clock_timestamp() - {column})"


def lock(cur, key):
    """An advisory lock held until the transaction ends."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


def _type(neutral):
    return TYPES[neutral.split(":")[0]]


def _column(c):
    default = "" if c.default is None else f" DEFAULT {now if c.default == 'now' else int(c.default)}"
    return f"{ident(c.name)} {_type(c.type)}{'' if c.null else ' NOT NULL'}{default}"


def create_schema(m):
    return [f"CREATE SCHEMA IF NOT EXISTS {m}"]


def create_table(m, name, columns, key):
    spec = [_column(c) for c in columns] + ([f"PRIMARY KEY ({', '.join(ident(k) for k in key)})"] if key else [])
    return f"CREATE TABLE IF NOT EXISTS {m}.{ident(name)} ({', '.join(spec)})"


def add_column(m, table, c):
    return f"ALTER TABLE {m}.{ident(table)} ADD COLUMN IF NOT EXISTS {_column(c)}"


def drop_key(m, table):
    return (f"DO $$DECLARE k name; BEGIN SELECT conname INTO k FROM pg_constraint "
            f"WHERE conrelid = to_regclass({literal(m + '.' + ident(table))}) AND contype = 'p'; "
            f"IF k IS NOT NULL THEN EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', "
            f"{literal(m + '.' + ident(table))}, k); END IF; END$$")


def columns(cur, schema, table):
    """{column: (neutral-comparable SQL type, nullable)} of a marker table, from the catalog (tests)."""
    cur.execute("SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s", (schema, table))
    return {name: (kind, null) for name, kind, null in cur.fetchall()}
