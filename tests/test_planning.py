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


def test_predicates_are_parameters():
    assert planning.predicate(pg_ident, "Id", None, 5) == (' WHERE "Id" <= %s', (5,))
    assert planning.predicate(pg_ident, "Id", 5, 9) == (' WHERE "Id" > %s AND "Id" <= %s', (5, 9))
    assert planning.predicate(pg_ident, "Id", 9, None) == (' WHERE "Id" > %s', (9,))


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
        rows, bounds = pg.count_and_boundaries(conn, table, chunk)
        with conn.cursor() as cur:        # the index walk finds what numbering every row finds
            cur.execute(planning.boundaries_sql(pg_ident, '"T"', "Id", chunk))
            assert planning.plan(rows, bounds, chunk) == planning.plan(rows, [r[0] for r in cur.fetchall()], chunk)
        ranges = planning.plan(rows, bounds, chunk)
        assert len(ranges) == -(-1000 // chunk)
        counts = []
        with conn.cursor() as cur:
            for lo, hi in ranges:
                where, params = planning.predicate(pg_ident, "Id", lo, hi)
                cur.execute(f'SELECT count(*) FROM "T"{where}', params)
                counts.append(cur.fetchone()[0])
        assert sum(counts) == 1000
        assert all(c == chunk for c in counts[:-1]) and 0 < counts[-1] <= chunk
    finally:
        conn.close()
