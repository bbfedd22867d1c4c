"""The marker tables: one definition (state.schema), the same in every database, versioned, and an
older destination's marker tables (as the last release before versioning made them) brought up to
it with their rows kept. PostgreSQL here; SQL Server in tests/test_mssql_integration.py."""
import pathlib

import psycopg2
import pytest

from so_luigi.dialects.mssql import state as ms_state
from so_luigi.dialects.postgres import state as pg_state
from so_luigi.errors import SchemaError
from so_luigi.state import markers, schema

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

# information_schema's data_type of each neutral type, as PostgreSQL reports it
PG_REPORTED = {"id": "text", "name": "text", "text": "text", "int": "integer", "bigint": "bigint",
               "float": "double precision", "checksum": "numeric", "json": "jsonb",
               "time": "timestamp with time zone"}


def expected():
    tables, keys = schema.definition()
    shape = {name: {c.name: (PG_REPORTED[c.type.split(":")[0]], c.null) for c in cols.values()}
             for name, cols in tables.items()}
    shape["schema_version"] = {c.name: (PG_REPORTED[c.type.split(":")[0]], c.null)
                               for c in schema.VERSION_TABLE.columns}
    return shape, keys


def catalog(cur, marker_schema="so_luigi"):
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (marker_schema,))
    return {t: pg_state.columns(cur, marker_schema, t) for (t,) in cur.fetchall()}


def primary_key(cur, table, marker_schema="so_luigi"):
    cur.execute("SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
                "AND a.attnum = ANY(c.conkey) WHERE c.contype = 'p' AND c.conrelid = to_regclass(%s) "
                "ORDER BY array_position(c.conkey, a.attnum)", (f"{marker_schema}.{table}",))
    return tuple(r[0] for r in cur.fetchall())


@pytest.fixture
def target(pair, monkeypatch):
    monkeypatch.setenv("SO_TARGET_URL", pair.target_url)
    monkeypatch.delenv("SO_MARKER_SCHEMA", raising=False)
    conn = psycopg2.connect(pair.target_url)
    yield conn
    conn.close()


def test_a_fresh_destination_gets_the_one_definition_at_the_current_version(target):
    assert markers.ensure_schema(target) == [m.version for m in schema.MIGRATIONS]
    shape, keys = expected()
    with target.cursor() as cur:
        assert catalog(cur) == shape
        for table, key in keys.items():
            assert primary_key(cur, table) == key, table
        cur.execute("SELECT max(version) FROM so_luigi.schema_version")
        assert cur.fetchone()[0] == schema.VERSION
    assert markers.ensure_schema(target) == []          # a second time: nothing to do


def test_the_last_release_s_marker_tables_are_brought_up_with_their_rows(target):
    with target.cursor() as cur:
        cur.execute(FIXTURES.joinpath("markers_fd112c1_postgres.sql").read_text().replace("{m}", '"so_luigi"'))
        cur.execute("INSERT INTO so_luigi.runs (run_id, source, source_schema, target_schema) "
                    "VALUES ('old', 'postgresql://u:***@h/db', 'public', 'public')")
        cur.execute("INSERT INTO so_luigi.partitions (run_id, table_name, partition, rows) VALUES ('old', 'T', 0, 5)")
        cur.execute("INSERT INTO so_luigi.replications (run_id, tables) VALUES ('old', '*')")
        assert primary_key(cur, "replications") == ("run_id", "tables")
    target.commit()
    assert markers.ensure_schema(target) == [m.version for m in schema.MIGRATIONS]
    shape, keys = expected()
    with target.cursor() as cur:
        assert catalog(cur) == shape
        assert primary_key(cur, "replications") == ()     # a long table selection fits now
        cur.execute("SELECT run_id, rows, attempts FROM so_luigi.partitions")
        assert cur.fetchall() == [("old", 5, 0)]
        cur.execute("SELECT count(*) FROM so_luigi.runs WHERE run_id = 'old'")
        assert cur.fetchone()[0] == 1
        # a selection of thousands of tables: more than a btree entry holds
        cur.execute("INSERT INTO so_luigi.replications (run_id, tables) VALUES ('old', %s)",
                    (",".join(f"table_{i:05d}" for i in range(5000)),))


def test_marker_tables_newer_than_this_release_stop_in_one_line(target):
    markers.ensure_schema(target)
    with target.cursor() as cur:
        cur.execute("INSERT INTO so_luigi.schema_version (version, what) VALUES (%s, 'from the future')",
                    (schema.VERSION + 1,))
    target.commit()
    with pytest.raises(SchemaError, match=f"version {schema.VERSION + 1}, newer than this so_luigi knows"):
        markers.ensure_schema(target)


def test_sql_server_renders_every_column_of_the_definition():
    """The T-SQL each step becomes names every column and key (run on a server by the integration suite)."""
    tables, keys = schema.definition()
    rendered = [s for m in schema.MIGRATIONS for step in m.steps for s in schema.statements(ms_state, "[so_luigi]", step)]
    text = "\n".join(rendered)
    for table, columns in tables.items():
        assert f"CREATE TABLE [so_luigi].[{table}]" in text
        for name in columns:
            assert f"COL_LENGTH(N'[so_luigi].[{table}]', N'{name}') IS NULL ALTER TABLE [so_luigi].[{table}] ADD [{name}]" in text
    assert "DROP CONSTRAINT" in text and "QUOTENAME(@k)" in text and "sp_executesql @s" in text


def test_workers_racing_under_repeatable_read_migrate_once(pair, target):
    """A role whose default isolation is REPEATABLE READ: the worker that waited for the lock
    still sees the first one's version, and migrates nothing."""
    import threading
    with target.cursor() as cur:
        cur.execute("SELECT current_database()")
        cur.execute(f"ALTER DATABASE {cur.fetchone()[0]} SET default_transaction_isolation = 'repeatable read'")
    target.commit()
    results, errors = [], []

    def migrate():
        conn = psycopg2.connect(pair.target_url)
        try:
            results.append(markers.ensure_schema(conn))
        except Exception as exc:  # noqa: BLE001 -- reported by the assertion
            errors.append(exc)
        finally:
            conn.close()
    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(results) == [[], [], [], [m.version for m in schema.MIGRATIONS]]
