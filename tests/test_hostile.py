"""Hostile data and hostile names: U+0000 policies, random rows through a real COPY (hypothesis),
10 MB values, identifiers that need quoting, hundreds of small tables."""
import io
from datetime import datetime
from decimal import Decimal

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from so_luigi import encode, stream
from so_luigi.dialects.postgres import checksum as pg_checksum, connection as pg_connection, ddl as pg_ddl
from so_luigi.dialects.base import Column, Table
from so_luigi.errors import DataError
from conftest import assert_same_tables

ROW_TABLE = Table("public", "h", [
    Column("Id", "int", kind="int", pg_type="integer"),
    Column("t", "nvarchar", kind="text", pg_type="text"),
    Column("b", "varbinary", kind="bytea", pg_type="bytea"),
    Column("d", "datetime", kind="timestamp", pg_type="timestamp(3)"),
    Column("n", "decimal", kind="numeric", pg_type="numeric(38,10)"),
    Column("f", "float", kind="float8", pg_type="double precision"),
    Column("ok", "bit", kind="bool", pg_type="boolean")], primary_key=["Id"])


def copy_and_read_back(url, table, lines):
    """COPY the lines in, return (PostgreSQL's checksum, its count) of what it stored."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(pg_connection.SESSION_SETTINGS)
            cur.execute(f"DROP TABLE IF EXISTS public.{table.name}")
            cur.execute(pg_ddl.create_table_sql("public", table))
            cur.copy_expert(pg_ddl.copy_in_sql("public", table, "text"), io.BytesIO(b"".join(l + b"\n" for l in lines)))
            cur.execute(pg_checksum.checksum_sql("public", table))
            count, total = cur.fetchone()
        conn.commit()
        return int(count), int(total)
    finally:
        conn.close()


@pytest.mark.parametrize("policy,expected", [("strip", "ab"), ("replace", "a\ufffdb")])
def test_nul_policies_change_and_count_and_still_verify(pair, policy, expected):
    encoder = encode.make_row_encoder(ROW_TABLE, nul=policy)
    rows = [(1, "a\x00b", None, None, None, None, None), (2, "clean", None, None, None, None, None),
            (3, None, None, None, None, None, None)]
    lines = encode.encode_lines(encoder(rows))
    assert encoder.changed == {"t": 1}
    count, total = copy_and_read_back(pair.target_url, ROW_TABLE, lines)
    assert (count, total) == (3, encode.lines_checksum(lines))           # verification still holds
    assert pair.query("target", "SELECT t FROM h WHERE \"Id\" = 1") == [(expected,)]


def test_nul_default_policy_names_table_key_and_column():
    with pytest.raises(DataError, match=r"public.h Id=7 column t .*U\+0000.*\[data\] nul"):
        encode.make_row_encoder(ROW_TABLE)([(7, "x\x00", None, None, None, None, None)])


def test_row_path_reads_the_nul_policy_from_config(monkeypatch):
    import luigi.configuration
    config = luigi.configuration.get_config()
    config.set("data", "nul", "strip")
    try:
        encoder = stream.row_encoder(ROW_TABLE)
        assert encoder([(1, "\x00x", None, None, None, None, None)]) == ["1\tx\t\\N\t\\N\t\\N\t\\N\t\\N"]
    finally:
        config.remove_option("data", "nul")


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
rows = st.lists(st.tuples(
    st.none() | text,
    st.none() | st.binary(max_size=20),
    st.none() | st.datetimes(min_value=datetime(1753, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 996000)),
    st.none() | st.decimals(min_value=Decimal("-1e27"), max_value=Decimal("1e27"), places=10, allow_nan=False),
    st.none() | st.floats(allow_nan=True, allow_infinity=True),
    st.none() | st.booleans()), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=rows)
def test_random_rows_round_trip_through_a_real_copy(pair, batch):
    """Whatever the values, PostgreSQL stores exactly the lines the encoder sent: its COPY output
    and its checksum of the stored rows equal the encoder's."""
    batch = [(i,) + r for i, r in enumerate(batch)]
    lines = encode.encode_lines(encode.make_row_encoder(ROW_TABLE)(batch))
    count, total = copy_and_read_back(pair.target_url, ROW_TABLE, lines)
    assert count == len(batch) and total == encode.lines_checksum(lines)
    out = io.BytesIO()
    conn = psycopg2.connect(pair.target_url)
    try:
        with conn.cursor() as cur:
            cur.execute(pg_connection.SESSION_SETTINGS)
            cur.copy_expert('COPY (SELECT * FROM public.h ORDER BY "Id") TO STDOUT', out)
    finally:
        conn.close()
    import re
    plain = {b"b": b"\x08", b"f": b"\x0c", b"v": b"\x0b"}
    printed = [re.sub(rb"\\(.)", lambda m: plain.get(m.group(1), m.group(0)), line)
               for line in out.getvalue().split(b"\n")[:-1]]
    assert printed == lines


WEIRD = ['Mixed Case', 'with "quote"', "select", "naïve_日本", "a.b", "x" * 63, "100% %s"]


@pytest.mark.parametrize("mode", ["streaming", "bulk"])
def test_identifiers_that_need_quoting_and_hundreds_of_tables(pair, mode):
    ddl = ['CREATE SCHEMA "Odd Schema"']
    for i, name in enumerate(WEIRD):
        q = '"' + name.replace('"', '""') + '"'
        ddl.append(f'CREATE TABLE "Odd Schema".{q} ("Id" int PRIMARY KEY, "Order" text, "Größe" int, '
                   f'"with space" timestamp(3)); CREATE INDEX ON "Odd Schema".{q} ("Order"); '
                   f'INSERT INTO "Odd Schema".{q} SELECT g, repeat(chr(65 + g % 26), g % 7), g, '
                   f"'2001-02-03'::timestamp + g * interval '1 ms' FROM generate_series(-50, 2000) g")
    for i in range(200):
        ddl.append(f'CREATE TABLE "Odd Schema"."t{i:03d}" ("Id" int PRIMARY KEY, v text); '
                   f'INSERT INTO "Odd Schema"."t{i:03d}" VALUES (1, \'x\'), (2, NULL), (3, \'\')')
    pair.query("source", "; ".join(ddl))
    env = pair.env(SO_SOURCE_SCHEMA="Odd Schema", SO_TARGET_SCHEMA="Odd Copy")
    result = pair.run("--workers", "3", "--chunk-rows", "500", "--mode", mode, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok: count+checksum") == len(WEIRD) + 200
    assert_same_tables(pair, WEIRD + [f"t{i:03d}" for i in range(0, 200, 37)], "Odd Schema", "Odd Copy")


def test_ten_megabyte_values(pair):
    pair.query("source", 'CREATE TABLE "Big" ("Id" int PRIMARY KEY, "Body" text, "Blob" bytea); '
                         "INSERT INTO \"Big\" SELECT g, repeat(E'line\\\\n\\t' || g, 1400000), "
                         "decode(repeat('00ff5c0a', 2500000), 'hex') FROM generate_series(1, 3) g")
    result = pair.run("--buffer-mb", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_tables(pair, ["Big"])
    assert pair.query("target", 'SELECT min(length("Body")), min(length("Blob")) FROM "Big"') == [(11200000, 10000000)]


def test_long_names_never_collide_when_cut_and_too_long_source_names_are_refused():
    from so_luigi.dialects.postgres import types as pg_types
    from so_luigi.errors import SchemaError
    long = Table("dbo", "x" * 63, [Column("Id", "int", kind="int")], primary_key=["Id"])
    names = {pg_ddl.partition_name(long, n) for n in range(20)} | {long.name}
    assert len(names) == 21 and all(len(n.encode()) <= 63 for n in names)
    too_long = Table("dbo", "T", [Column("ü" * 40, "int", source_type="int")])
    with pytest.raises(SchemaError, match="at most 63 bytes .* T." + "ü" * 40):
        pg_types.check_mappable([too_long], "mssql")
