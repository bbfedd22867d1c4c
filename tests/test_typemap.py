"""The SQL Server type table: every common type maps, the mapped types exist in PostgreSQL, the
docs/types.md shows the same table, and what cannot be mapped stops the run with its name."""
import json
import os

import psycopg2
import pytest

from so_luigi.dialects.postgres import types as pg_types
from so_luigi.dialects.postgres import ddl as pg_ddl
from so_luigi.dialects.base import Column, Table
from so_luigi.errors import ConfigError, SchemaError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (DATA_TYPE, length, precision, scale, expected PostgreSQL type): the list, parameterised
MSSQL_COLUMNS = [
    ("bit", None, None, None, "boolean"),
    ("tinyint", None, 3, 0, "smallint"),
    ("smallint", None, 5, 0, "smallint"),
    ("int", None, 10, 0, "integer"),
    ("bigint", None, 19, 0, "bigint"),
    ("decimal", None, 18, 4, "numeric(18,4)"),
    ("numeric", None, 38, 0, "numeric(38,0)"),
    ("money", None, 19, 4, "numeric(19,4)"),
    ("smallmoney", None, 10, 4, "numeric(10,4)"),
    ("float", None, 53, None, "double precision"),
    ("real", None, 24, None, "real"),
    ("date", None, 0, None, "date"),
    ("time", None, 7, None, "time(6)"),
    ("time", None, 3, None, "time(3)"),
    ("datetime", None, 3, None, "timestamp(3)"),
    ("datetime2", None, 7, None, "timestamp(6)"),
    ("datetime2", None, 0, None, "timestamp(0)"),
    ("smalldatetime", None, 0, None, "timestamp(0)"),
    ("datetimeoffset", None, 7, None, "timestamptz(6)"),
    ("char", 10, None, None, "char(10)"),
    ("nchar", 10, None, None, "char(10)"),
    ("varchar", 50, None, None, "varchar(50)"),
    ("varchar", -1, None, None, "text"),
    ("nvarchar", 40, None, None, "varchar(40)"),
    ("nvarchar", -1, None, None, "text"),
    ("text", 2147483647, None, None, "text"),
    ("ntext", 1073741823, None, None, "text"),
    ("binary", 16, None, None, "bytea"),
    ("varbinary", 100, None, None, "bytea"),
    ("varbinary", -1, None, None, "bytea"),
    ("image", 2147483647, None, None, "bytea"),
    ("uniqueidentifier", None, None, None, "uuid"),
    ("xml", -1, None, None, "xml"),
    ("timestamp", 8, None, None, "bytea"),
    ("rowversion", 8, None, None, "bytea"),
]


def mssql_table():
    cols = [Column(name=f"c_{i}_{t[0]}", data_type=t[0], length=t[1], precision=t[2], scale=t[3],
                   nullable=i % 2 == 0, source_type=t[0]) for i, t in enumerate(MSSQL_COLUMNS)]
    cols[1].identity = True
    return Table(schema="dbo", name="AllTypes", columns=cols, dialect="mssql")


def test_every_common_sql_server_type_maps():
    table = mssql_table()
    assert pg_types.map_table(table, "mssql") == []
    assert [c.pg_type for c in table.columns] == [t[4] for t in MSSQL_COLUMNS]


def test_mapped_table_is_created_by_postgresql_with_nullability_and_identity(pair):
    table = mssql_table()
    pg_types.map_table(table, "mssql")
    conn = psycopg2.connect(pair.target_url)
    try:
        with conn.cursor() as cur:
            cur.execute(pg_ddl.create_table_sql("public", table))
            cur.execute("SELECT attname, format_type(atttypid, atttypmod), attnotnull, attidentity "
                        "FROM pg_attribute WHERE attrelid = 'public.\"AllTypes\"'::regclass AND attnum > 0 "
                        "ORDER BY attnum")
            got = cur.fetchall()
    finally:
        conn.rollback()
        conn.close()
    assert len(got) == len(MSSQL_COLUMNS)
    for (name, typ, notnull, identity), col in zip(got, table.columns):
        assert name == col.name
        assert notnull == (not col.nullable or col.identity)
        assert identity == ("d" if col.identity else "")
        assert pg_types.base_type(typ) == pg_types.base_type(col.pg_type)


def test_unmappable_types_are_all_named_before_anything_moves():
    table = mssql_table()
    table.columns += [Column(name="v", data_type="vector", source_type="vector(3)"),
                      Column(name="g", data_type="MyClrType", source_type="MyClrType")]
    with pytest.raises(SchemaError, match=r"dbo.AllTypes.v \(vector\(3\)\), dbo.AllTypes.g \(MyClrType\)"):
        pg_types.check_mappable([table], "mssql")


def test_overrides_by_type_and_by_column(tmp_path, monkeypatch):
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"mssql": {"xml": "text", "sql_variant": "text"},
                                "columns": {"dbo.AllTypes.c_0_bit": "smallint"}}))
    monkeypatch.setenv("SO_TYPE_OVERRIDES", str(path))
    table = mssql_table()
    table.columns.append(Column(name="v", data_type="sql_variant", source_type="sql_variant"))
    pg_types.check_mappable([table], "mssql", pg_types.load_overrides())
    types = {c.name: c.pg_type for c in table.columns}
    assert types["c_32_xml"] == "text" and types["v"] == "text" and types["c_0_bit"] == "smallint"


def test_bad_override_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SO_TYPE_OVERRIDES", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="missing.json"):
        pg_types.load_overrides()
    bad = tmp_path / "bad.json"
    bad.write_text('{"msql": {}}')
    monkeypatch.setenv("SO_TYPE_OVERRIDES", str(bad))
    with pytest.raises(ConfigError, match="unknown keys"):
        pg_types.load_overrides()


def test_shipped_override_file_is_valid():
    data = pg_types.load_overrides(os.path.join(ROOT, "config", "type_overrides.json"))
    assert set(data) <= {"_comment", "mssql", "postgres", "columns"}


def test_readme_shows_the_whole_type_table():
    with open(os.path.join(ROOT, "docs", "types.md"), encoding="utf-8") as fh:
        readme = fh.read()
    assert pg_types.markdown_table() in readme
