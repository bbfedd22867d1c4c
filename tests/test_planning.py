"""Partition planning: balanced by rows over gappy keys, covering every key exactly once."""
import psycopg2
import pytest

from so_luigi import planning
from so_luigi.dialects import postgres as pg
from so_luigi.dialects.base import pg_ident


def test_ranges_cover_everything_once():
    assert planning.plan(0, [], 10) == [(None, None)]
    assert planning.plan(10, [10], 10) == [(None, None)]
    assert planning.plan(25, [10, 20], 10) == [(None, 10), (10, 20), (20, None)]
    assert planning.plan(20, [10, 20], 10) == [(None, 10), (10, None)]


def test_ranges_are_parameters_and_a_percent_in_a_name_is_not_a_placeholder():
    assert planning.ranged("SELECT * FROM t", pg_ident, "Id", None, 5) == ('SELECT * FROM t WHERE "Id" <= %s', (5,))
    assert planning.ranged("SELECT * FROM t", pg_ident, "Id", 5, 9) == \
        ('SELECT * FROM t WHERE "Id" > %s AND "Id" <= %s', (5, 9))
    assert planning.ranged("SELECT * FROM t", pg_ident, "Id", 9, None) == ('SELECT * FROM t WHERE "Id" > %s', (9,))
    # the whole table: no parameters, so the text is sent as it is
    assert planning.ranged('SELECT * FROM "100%"', pg_ident, "Id", None, None) == ('SELECT * FROM "100%"', None)
    assert planning.ranged('SELECT * FROM "100%"', pg_ident, "5%s", 1, None) == \
        ('SELECT * FROM "100%%" WHERE "5%%s" > %s', (1,))


def test_rows_per_partition_cuts_wide_tables_by_size_and_narrow_ones_by_rows():
    mb = 1 << 20
    # Posts-like: 1.86M rows in 1244 MB, 256 MB chunks -> 5 partitions of 380,378 rows (2% over
    # the estimate, so a slightly low estimate leaves no sliver of a sixth)
    assert planning.rows_per_partition(1_864_598, 1244 * mb, 10_000_000, 256) == 380_378
    assert planning.rows_per_partition(1_000_000, 1000 * mb, 10_000_000, 256) == 255_000   # 4 by size
    # Votes-like: 5.07M rows in 222 MB fit one chunk by size, so chunk_rows alone decides
    assert planning.rows_per_partition(5_071_682, 222 * mb, 10_000_000, 256) == 10_000_000
    assert planning.rows_per_partition(5_071_682, 222 * mb, 500_000, 256) == 500_000
    # chunk_rows stays the ceiling, also for wide tables
    assert planning.rows_per_partition(10_000_000, 10_000 * mb, 100_000, 256) == 100_000
    # no size known (SQL Server login without VIEW DATABASE STATE), no estimate, no size limit
    assert planning.rows_per_partition(1_000_000, None, 300, 256) == 300
    assert planning.rows_per_partition(0, 10_000 * mb, 300, 256) == 300
    assert planning.rows_per_partition(1_000_000, 10_000 * mb, 300_000, 0) == 300_000
    # a small table's step never depends on its (estimated) row count
    assert planning.rows_per_partition(900, 100_000, 1000, 256) == 1000


def test_row_estimate_and_walk_when_the_step_comes_from_statistics(pair):
    conn = psycopg2.connect(pair.source_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute('CREATE TABLE "W" ("Id" int PRIMARY KEY, v text); '
                        "INSERT INTO \"W\" SELECT g * 3, repeat('x', 100) FROM generate_series(1, 3000) g")
            assert pg.row_estimate(cur, '"W"') is None          # never analyzed
            cur.execute('ANALYZE "W"')
            assert pg.row_estimate(cur, '"W"') == 3000
        from so_luigi.dialects.base import Column, Table
        table = Table(schema="public", name="W", columns=[Column("Id", "int4"), Column("v", "text")],
                      primary_key=["Id"])
        seen = []
        rows, bounds, step = pg.count_and_boundaries(conn, table, lambda est: seen.append(est) or est // 4)
        assert seen == [3000] and step == 750 and rows == 3000
        assert bounds == [750 * 3, 1500 * 3, 2250 * 3, 3000 * 3]
        assert planning.plan(rows, bounds, step) == [(None, 2250), (2250, 4500), (4500, 6750), (6750, None)]
    finally:
        conn.close()


@pytest.mark.parametrize("chunk", [1, 7, 100, 999, 1000, 5000])
def test_plan_on_a_real_table_with_gaps(pair, chunk):
    conn = psycopg2.connect(pair.source_url)
    try:
        with conn.cursor() as cur:
            # ids with gaps and negatives, 1000 rows
            cur.execute('CREATE TABLE "T" ("Id" int PRIMARY KEY, v text); '
                        "INSERT INTO \"T\" SELECT g * g - 5000, 'x' FROM generate_series(1, 1000) g")
        conn.commit()
        from so_luigi.dialects.base import Column, Table
        table = Table(schema="public", name="T", columns=[Column("Id", "int4"), Column("v", "text")],
                      primary_key=["Id"])
        rows, bounds, step = pg.count_and_boundaries(conn, table, lambda estimate: chunk)
        assert (rows, step) == (1000, chunk)
        with conn.cursor() as cur:        # the index walk finds what numbering every row finds
            cur.execute(planning.boundaries_sql(pg_ident, '"T"', "Id", chunk))
            assert planning.plan(rows, bounds, chunk) == planning.plan(rows, [r[0] for r in cur.fetchall()], chunk)
        ranges = planning.plan(rows, bounds, chunk)
        assert len(ranges) == -(-1000 // chunk)
        counts = []
        with conn.cursor() as cur:
            for lo, hi in ranges:
                cur.execute(*planning.ranged('SELECT count(*) FROM "T"', pg_ident, "Id", lo, hi))
                counts.append(cur.fetchone()[0])
        assert sum(counts) == 1000
        assert all(c == chunk for c in counts[:-1]) and 0 < counts[-1] <= chunk
    finally:
        conn.close()
