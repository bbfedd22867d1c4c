"""Partition planning: balanced by rows over gappy keys, covering every key exactly once."""
import psycopg2
import pytest

from so_luigi import planning
from so_luigi.dialects.postgres import catalog as pg_catalog, connection as pg_connection
from so_luigi.dialects.postgres.connection import ident as pg_ident


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
            assert pg_catalog.row_estimate(cur, '"W"') is None          # never analyzed
            cur.execute('ANALYZE "W"')
            assert pg_catalog.row_estimate(cur, '"W"') == 3000
        from so_luigi.dialects.base import Column, Table
        table = Table(schema="public", name="W", columns=[Column("Id", "int4"), Column("v", "text")],
                      primary_key=["Id"])
        seen = []
        rows, bounds, step = pg_catalog.count_and_boundaries(conn, table, lambda est: seen.append(est) or est // 4)
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
        rows, bounds, step = pg_catalog.count_and_boundaries(conn, table, lambda estimate: chunk)
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


def test_cuts_from_statistics_interpolate_between_points_and_never_repeat_a_key():
    tenths = [(k, k) for k in range(0, 101, 10)]         # 100 rows, keys 0..100, evenly spread
    assert planning.cdf_cuts(tenths, 25, 100) == [25, 50, 75]
    assert planning.cdf_cuts(tenths, 30, 100) == [30, 60, 90]
    # a gap: no rows between 1000 and 1001 then many; the cut follows the rows, not the keys
    assert planning.cdf_cuts([(0, 0), (1000, 10), (1001, 20), (1002, 30)], 10, 30) == [1000, 1001]
    # two cuts in one narrow step would be the same key: the empty range is not planned
    assert planning.cdf_cuts([(1, 0), (2, 80), (100, 100)], 10, 100) == [1, 2, 51]
    # statistics short of the estimate (rows added since): the last cut sits at the last point
    assert planning.cdf_cuts([(0, 0), (50, 50)], 25, 100) == [25, 50]
    # a SQL Server histogram: (range_high_key, rows up to and with it); 1 row at the minimum,
    # then keys twice as sparse above 1001
    assert planning.cdf_cuts([(1, 1), (1001, 1001), (3001, 2001)], 500, 2001) == [500, 1000, 1999, 2999]
    assert planning.cdf_cuts([(5, 0), (9, 2)], 1, 2) == [7]


def test_keys_that_cannot_be_interpolated_are_cut_at_the_statistics_points():
    keys = ["a", "b", "c", "d", "e"]
    # 100 rows evenly over five points: a cut at each point reaching 25, 50, 75
    assert planning.point_cuts(keys, [20, 40, 60, 80, 100], 25, 100) == ["b", "c", "d"]
    # one heavy point holds several chunks: cut once there, never twice at one key
    assert planning.point_cuts(keys, [10, 90, 95, 98, 100], 20, 100) == ["b"]
    # the last point is never a cut (the rest is the last range), even when statistics fall short
    assert planning.point_cuts(keys, [10, 20, 30, 40, 50], 25, 100) == ["c"]
    assert planning.point_cuts(["x"], [1000], 10, 1000) == []


def _skewed_table(conn, name, rows):
    """Keys whose gaps grow along the table (g*g): cuts spaced evenly by key would be far off."""
    with conn.cursor() as cur:
        cur.execute(f'CREATE TABLE "{name}" ("Id" int PRIMARY KEY, v text); '
                    f"INSERT INTO \"{name}\" SELECT g * g - 5000, 'x' FROM generate_series(1, {rows}) g; "
                    "SELECT pg_stat_force_next_flush()")
    conn.commit()      # its inserts counted now, not after the ANALYZE (they would count as changes since)
    with conn.cursor() as cur:
        cur.execute(f'ANALYZE "{name}"')
    conn.commit()
    from so_luigi.dialects.base import Column, Table
    return Table(schema="public", name=name, columns=[Column("Id", "int4"), Column("v", "text")],
                 primary_key=["Id"])


def _range_counts(conn, table, ranges):
    counts = []
    with conn.cursor() as cur:
        for lo, hi in ranges:
            cur.execute(*planning.ranged(f'SELECT count(*) FROM "{table}"', pg_ident, "Id", lo, hi))
            counts.append(cur.fetchone()[0])
    return counts


def test_a_big_table_with_fresh_statistics_is_cut_from_its_histogram_without_a_walk(pair, monkeypatch):
    conn = psycopg2.connect(pair.source_url)
    try:
        table = _skewed_table(conn, "H", 20000)
        monkeypatch.setattr(planning, "STATISTICS_FROM_ROWS", 10000)
        monkeypatch.setattr(pg_catalog, "offset_boundaries", lambda *a: pytest.fail("walked the index"))
        rows, bounds, step = pg_catalog.count_and_boundaries(conn, table, lambda est: est // 8)
        assert (rows, step, len(bounds)) == (20000, 2500, 7)
        ranges = planning.plan(rows, bounds, step)
        counts = _range_counts(conn, "H", ranges)
        assert sum(counts) == 20000 and len(counts) == 8
        # 20,000 rows are all in ANALYZE's sample: the bounds are exact percentiles
        assert all(abs(c - 2500) <= 2500 * 0.02 for c in counts), counts
    finally:
        conn.close()


@pytest.mark.parametrize("change", ["rows added", "rows deleted"])
def test_stale_statistics_are_not_trusted_and_the_key_is_walked(pair, monkeypatch, change):
    conn = psycopg2.connect(pair.source_url)
    try:
        table = _skewed_table(conn, "S", 20000)
        with conn.cursor() as cur:
            if change == "rows added":       # the histogram knows nothing of keys above its last bound
                cur.execute("INSERT INTO \"S\" SELECT 500000000 + g, 'x' FROM generate_series(1, 20000) g")
            else:                            # the same pages, half the rows: only the change count says so
                cur.execute('DELETE FROM "S" WHERE "Id" > 100000000')
                cur.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        monkeypatch.setattr(planning, "STATISTICS_FROM_ROWS", 10000)
        rows, bounds, step = pg_catalog.count_and_boundaries(conn, table, lambda est: 2500)
        total = pair.query("source", 'SELECT count(*) FROM "S"')[0][0]
        assert rows == total
        counts = _range_counts(conn, "S", planning.plan(rows, bounds, step))
        assert sum(counts) == total and all(c == 2500 for c in counts[:-1]), counts
    finally:
        conn.close()


def test_a_table_planned_from_statistics_copies_exactly(pair, monkeypatch):
    """The plan stored from the histogram is what every process loads: ReplicateAll in another
    process reads it, copies every row once and verifies the table against the source."""
    from so_luigi import load
    from so_luigi.state import markers
    from so_luigi.config import source_endpoint, target_endpoint
    from tests.conftest import assert_same_tables
    conn = psycopg2.connect(pair.source_url)
    try:
        _skewed_table(conn, "Big", 30000)
    finally:
        conn.close()
    monkeypatch.setattr(planning, "STATISTICS_FROM_ROWS", 10000)
    monkeypatch.setattr(pg_catalog, "offset_boundaries", lambda *a: pytest.fail("walked the index"))
    with pg_connection.session(target_endpoint()) as tconn:
        markers.register_run(tconn, "default", source_endpoint(), target_endpoint())
    assert len(load.ensure_planned("default", "Big", 4000, "auto", "streaming")) == 8
    result = pair.run("--workers", "2", "--chunk-rows", "4000", "--tables", "Big")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_tables(pair, ["Big"])
    assert pair.query("target", "SELECT count(*), sum(rows) FROM so_luigi.loaded") == [(8, 30000)]
    assert pair.query("target", "SELECT verdict FROM so_luigi.tables")[0][0].startswith("ok")


@pytest.mark.parametrize("key", ["int", "uuid"])
def test_a_table_well_within_one_partition_is_planned_from_its_statistics_and_copied_exactly(pair, key):
    """No scan to plan a table whose statistics put it within half a partition: its planned rows
    are the planner's estimate, here stale (half the rows deleted since ANALYZE, the pages kept),
    and the copy is still exact: rows are counted where they are read, and verified."""
    from tests.conftest import assert_same_tables
    kind = "int PRIMARY KEY" if key == "int" else "uuid PRIMARY KEY"
    value = "g" if key == "int" else "md5(g::text)::uuid"
    pair.query("source", f'CREATE TABLE "Est" ("Id" {kind}, v text); '
                         f"INSERT INTO \"Est\" SELECT {value}, repeat('x', 50) FROM generate_series(1, 4000) g; "
                         'ALTER TABLE "Est" SET (autovacuum_enabled = false); '     # its ANALYZE would mend the estimate
                         'ANALYZE "Est"; DELETE FROM "Est" WHERE "Id" IN (SELECT "Id" FROM "Est" ORDER BY "Id" LIMIT 2000)')
    assert pair.query("source", 'SELECT count(*) FROM "Est"') == [(2000,)]
    result = pair.run("--workers", "2", "--tables", "Est")
    assert result.returncode == 0, result.stderr[-3000:]
    assert pair.query("target", "SELECT source_rows, partitions FROM so_luigi.tables") == [(4000, 1)]
    assert_same_tables(pair, ["Est"])
    assert pair.query("target", "SELECT sum(rows) FROM so_luigi.loaded") == [(2000,)]
    (rows, verdict), = pair.query("target", "SELECT rows, verdict FROM so_luigi.tables")
    assert rows == 2000 and verdict.startswith("ok")


def test_many_tables_described_at_once_are_each_described_as_alone(pair):
    """describe_many asks each catalog query once for every table: each table comes out as a
    query of its own would describe it (columns, identity, defaults, comments, key, indexes,
    constraints, foreign keys), names that need quoting and a second schema included."""
    pair.query("source", """
        CREATE SCHEMA "Other Schema";
        CREATE TABLE "Parent" ("Id" int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text UNIQUE);
        CREATE TABLE "Mixed Case.t" (k bigint PRIMARY KEY, p int REFERENCES "Parent" ("Id"),
                                    v numeric(8, 2) DEFAULT 1.5 CHECK (v > 0), at timestamptz);
        CREATE INDEX mixed_at ON "Mixed Case.t" (at DESC) WHERE v > 1;
        COMMENT ON TABLE "Mixed Case.t" IS 'mixed'; COMMENT ON COLUMN "Mixed Case.t".v IS 'value';
        CREATE TABLE "Other Schema"."Parent" (a int, b text COLLATE "C", PRIMARY KEY (a, b));
        CREATE TABLE "Other Schema".lone (x int)""")
    located = [("public", "Parent"), ("public", "Mixed Case.t"), ("Other Schema", "Parent"),
               ("Other Schema", "lone")]
    conn = psycopg2.connect(pair.source_url)
    try:
        together = [t.to_json() for t in pg_catalog.describe_many(conn, located)]
        alone = [pg_catalog.describe(conn, s, n).to_json() for s, n in located]
        assert together == alone
        assert [(t["schema"], t["name"]) for t in together] == located
        mixed = together[1]
        assert mixed["comment"] == "mixed" and mixed["primary_key"] == ["k"]
        assert {c["kind"] for c in mixed["constraints"]} == {"check", "foreign_key"}
        assert [i["name"] for i in mixed["indexes"]] == ["mixed_at"]
        assert together[0]["columns"][0]["identity"] and together[2]["primary_key"] == ["a", "b"]
        with pytest.raises(Exception, match="nosuch not found"):
            pg_catalog.describe_many(conn, located + [("public", "nosuch")])
    finally:
        conn.close()
