"""The PostgreSQL-to-PostgreSQL content checksum: which hash each table gets, and that the
per-column hash sees every kind of change a copy could make (run on the real server)."""
import functools
import operator

import psycopg2
import pytest

from so_luigi.config import Endpoint, parse_url
from so_luigi.dialects.postgres import checksum as pg_checksum
from so_luigi.dialects.postgres.catalog import describe
from conftest import LINES_TABLE_SQL, lines_reference, lines_sum

TYPES = ("a int2, b int4, c int8, d text, e varchar(20), f char(5), g timestamp(3), h numeric(12, 3), "
         "i real, j double precision, k uuid, l int4")
ROW = ("1, 2, 3, 'héllo', 'x', 'ab', '2010-01-02 03:04:05.678', 123.456, 1.5, 2.25, "
       "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 7")


def checksum(conn, table, method):
    with conn.cursor() as cur:
        cur.execute(pg_checksum.row_checksum_sql("public", table.name, method, table))
        return cur.fetchone()


@pytest.fixture
def conn(pair):
    c = psycopg2.connect(pair.source_url)
    c.autocommit = True
    yield c
    c.close()


def make(conn, name, types=TYPES, rows=(ROW,)):
    with conn.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{name}"; CREATE TABLE "{name}" ({types})')
        for row in rows:
            cur.execute(f'INSERT INTO "{name}" VALUES ({row})')
    return describe(conn, "public", name)


@pytest.mark.parametrize("change", [
    "b = 3",                                  # one integer
    "b = l, l = b",                           # equal-typed values swapped between columns
    "d = upper(d)",                           # text case
    "e = NULL",                               # a value becomes NULL
    "g = g + interval '1 millisecond'",       # a millisecond
    "h = 123.457",                            # last decimal
    "i = 1.5000001",                          # single precision
    "j = 2.2500000000000004",                 # last bit of a double
    "k = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'",
])
def test_the_column_hash_sees_every_change(conn, change):
    table = make(conn, "H")
    assert pg_checksum.column_hash_expr(table) is not None
    before = checksum(conn, table, "columns")
    with conn.cursor() as cur:
        cur.execute(f'UPDATE "H" SET {change}')
    assert checksum(conn, table, "columns") != before
    assert before[0] == 1


def test_a_null_hashes_as_minus_one_minus_its_position(conn):
    table = make(conn, "N", rows=("NULL, " * 11 + "NULL",))
    assert checksum(conn, table, "columns") == (1, functools.reduce(operator.xor, (-1 - i for i in range(12))))
    with conn.cursor() as cur:
        cur.execute('DELETE FROM "N"')
    assert checksum(conn, table, "columns") == (0, 0)


def test_text_is_hashed_by_its_bytes_whatever_the_collation(conn):
    plain = make(conn, "C1", "d text", ("'Straße'",))
    collated = make(conn, "C2", 'd text COLLATE "POSIX"', ("'Straße'",))
    assert checksum(conn, plain, "columns") == checksum(conn, collated, "columns")


def test_each_table_gets_the_cheapest_hash_both_servers_agree_on(pair, conn):
    from so_luigi.dialects import source as source_for
    source = source_for(Endpoint(parse_url(pair.source_url), "public", "source"))
    with_map = make(conn, "M1")
    with_date = make(conn, "M2", "a int4, b date", ("1, '2010-01-01'",))
    with_point = make(conn, "M3", "a int4, b point", ("1, '(1,2)'",))
    for table in (with_map, with_date, with_point):
        for c in table.columns:
            c.pg_type = c.source_type         # as typemap maps a PostgreSQL source
    assert source.row_hash(with_map, conn.server_version) == "columns"
    assert source.row_hash(with_date, conn.server_version) == "record"
    assert source.row_hash(with_point, conn.server_version) == "text"     # point has no hash function
    with_point.columns[1].pg_type = "text"                               # a mapped type: binary COPY is off
    assert source.row_hash(with_point, conn.server_version) == "text"


# ---- the "lines" checksum a SQL Server destination computes too -----------------------------------

def test_the_lines_checksum_is_its_spec_on_every_kind_of_column(conn):
    with conn.cursor() as cur:
        cur.execute(LINES_TABLE_SQL)
        table = describe(conn, "public", "L")
        cur.execute("SET TIME ZONE 'America/New_York'")      # the text is in UTC whatever the session's
        lines = lines_reference(cur)
        cur.execute(pg_checksum.row_checksum_sql("public", "L", "lines", table))
        found = cur.fetchone()
    assert "\x1f".join(lines[1].split("\x1f")[:2]) == "0\x1f0" and lines[2] == "\x1f".join(["\\N"] * 23)
    assert "h\u00e9llo \U0001F600\ttab\\ \\N" in lines[0] and "1234.5000" in lines[0] and "\x1f-365606\x1f" in lines[0]
    assert found == (3, lines_sum(lines))
