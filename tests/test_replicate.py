"""End to end, PostgreSQL to PostgreSQL, through the real `luigi` command line."""
import os

import pytest

from so_luigi.testing import sample
from conftest import assert_same_tables, frozen_pages

TABLES = sample.table_names(post_history=True)


def loaded_markers(pair):
    return pair.query("target", "SELECT table_name, partition, loaded_at, worker FROM so_luigi.loaded "
                                "ORDER BY 1, 2")


@pytest.mark.parametrize("mode", ["streaming", "bulk"])
def test_generated_sample_copies_exactly_and_second_run_does_nothing(pair, mode):
    sample.fill(pair.source(), scale=0.004, post_history=True, log=lambda *a: None)
    result = pair.run("--workers", "3", "--chunk-rows", "7000", "--mode", mode)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok: count+checksum" in result.stdout
    assert_same_tables(pair, TABLES)
    if mode == "bulk":
        # COPY FREEZE really happened: every page of every loaded heap is all-frozen
        pages = frozen_pages(pair.target_url)
        # the source's shape: one plain table each, even Votes of several partitions, all frozen
        assert set(pages) == set(TABLES) and len(pair.query("target", "SELECT * FROM so_luigi.partitions "
                                                                      "WHERE table_name = 'Votes'")) > 1
        not_frozen = {name: p for name, p in pages.items() if not (p[0] > 0 and p[0] == p[1] == p[2])}
        assert not not_frozen
        # the server read the files itself, and they are gone once their table completed
        assert pair.query("target", "SELECT DISTINCT via FROM so_luigi.loaded") == [("server-file",)]
        assert "the server reads the files itself" in result.stderr
        assert not any(files for _, _, files in os.walk(pair.bulk_dir))


    # partitions balanced by rows, not by id arithmetic: all but the last hold chunk_rows rows
    sizes = pair.query("target", "SELECT partition, rows FROM so_luigi.loaded WHERE table_name = 'Votes' "
                                 "ORDER BY partition")
    assert len(sizes) > 3
    assert all(rows == 7000 for _, rows in sizes[:-1]) and 0 < sizes[-1][1] <= 7000

    # keys, indexes, identity and statistics were built after verification
    pk = pair.query("target", "SELECT conname FROM pg_constraint WHERE contype = 'p' "
                              "AND conrelid = '\"Users\"'::regclass")
    assert pk == [("PK_Users_Id",)]
    new_id = pair.query("target", 'INSERT INTO "Users" ("CreationDate", "DisplayName", "DownVotes", '
                                  '"LastAccessDate", "Reputation", "UpVotes", "Views") '
                                  "VALUES (now(), 'new', 0, now(), 1, 0, 0) RETURNING \"Id\"")[0][0]
    assert new_id > pair.query("source", 'SELECT max("Id") FROM "Users"')[0][0]
    analyzed, never = pair.query("target", "SELECT count(*), count(*) FILTER (WHERE last_analyze IS NULL) "
                                           "FROM pg_stat_user_tables WHERE schemaname = 'public'")[0]
    assert analyzed >= len(TABLES) and never == 0

    before = loaded_markers(pair)
    again = pair.run("--workers", "3", "--chunk-rows", "7000", "--mode", mode)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "did not run any tasks" in again.stderr or "complete ones were encountered" in again.stderr
    assert loaded_markers(pair) == before


def test_verify_tally_copies_exactly_without_counting_the_destination(pair):
    """--verify tally: the source is counted, the destination is not; each table's verdict says so."""
    from so_luigi import load
    sample.fill(pair.source(), scale=0.002, names=["Users", "Votes", "Badges"], log=lambda *a: None)
    result = pair.run("--verify", "tally", "--chunk-rows", "2000", "--tables", "Users,Votes,Badges")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_tables(pair, ["Users", "Votes", "Badges"])
    verdicts = pair.query("target", "SELECT table_name, verdict, rows FROM so_luigi.tables ORDER BY 1")
    counts = {t: pair.query("source", f'SELECT count(*) FROM "{t}"')[0][0] for t in ("Users", "Votes", "Badges")}
    assert verdicts == [(t, "ok: count vs COPY tallies", counts[t]) for t in ("Badges", "Users", "Votes")]
    assert "ok: count vs COPY tallies" in result.stdout
    dst = load.endpoints()[1]
    assert dst.tallies(sample.table_def("Users", "public"), "tally")
    assert not dst.tallies(sample.table_def("Users", "public"), "count")


def test_subset_schemas_and_empty_table(pair):
    pair.query("source", 'CREATE SCHEMA "Src"; CREATE TABLE "Src"."Empty" ("Id" int PRIMARY KEY, "v" text); '
                         'CREATE TABLE "Src"."NoKey" ("a" text, "b" numeric(12,3)); '
                         "INSERT INTO \"Src\".\"NoKey\" SELECT repeat('x', g % 7), g / 7.0 FROM generate_series(1, 5000) g; "
                         'CREATE TABLE "Src"."Skipped" ("Id" int); '
                         'CREATE UNIQUE INDEX "ix_nokey_a_b" ON "Src"."NoKey" ("a" DESC, "b"); '
                         'CREATE INDEX "ix_nokey_b" ON "Src"."NoKey" ("b")')
    env = pair.env(SO_SOURCE_SCHEMA="Src", SO_TARGET_SCHEMA="Copy")
    result = pair.run("--tables", "Empty,NoKey", "--chunk-rows", "1000", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert pair.query("target", 'SELECT count(*) FROM "Copy"."Empty"') == [(0,)]
    # a table without an integer key is cut by heap block ranges (test_any_key.py)
    assert pair.query("target", "SELECT count(*), sum(rows) FROM so_luigi.loaded WHERE table_name = 'NoKey'") == [(5, 5000)]
    assert pair.query("target", "SELECT to_regclass('\"Copy\".\"Skipped\"')") == [(None,)]
    src = pair.query("source", 'SELECT a, b FROM "Src"."NoKey" ORDER BY a, b')
    assert src == pair.query("target", 'SELECT a, b FROM "Copy"."NoKey" ORDER BY a, b')

    # secondary indexes come over with their names, uniqueness and direction
    indexes = pair.query("target", "SELECT indexdef FROM pg_indexes WHERE schemaname = 'Copy' AND tablename = 'NoKey' ORDER BY indexname")
    assert [i[0] for i in indexes] == [
        'CREATE UNIQUE INDEX ix_nokey_a_b ON "Copy"."NoKey" USING btree (a DESC, b)',
        'CREATE INDEX ix_nokey_b ON "Copy"."NoKey" USING btree (b)']


def test_wide_tables_are_cut_by_size_and_each_is_completed_as_soon_as_it_is_loaded(pair):
    """--chunk-mb cuts Posts (wide) into partitions of about that size while Votes (narrow, under
    --chunk-rows) stays whole; with one worker, a table's completion (verify, key, ANALYZE) runs
    right after its last partition, before the next table's partitions, instead of all
    completions waiting for the last partition of the run."""
    sample.fill(pair.source(), scale=0.003, names=["Posts", "Comments", "Votes"], log=lambda *a: None)
    result = pair.run("--workers", "1", "--chunk-mb", "2", "--tables", "Posts,Comments,Votes")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_tables(pair, ["Posts", "Comments", "Votes"])
    sizes = dict(pair.query("source", "SELECT relname, pg_table_size(oid) FROM pg_class "
                                      "WHERE relname IN ('Posts', 'Comments', 'Votes')"))
    parts = dict(pair.query("target", "SELECT table_name, partitions FROM so_luigi.tables"))
    assert parts["Posts"] == -(-sizes["Posts"] // (2 << 20)) > 1      # by size
    assert parts["Votes"] == -(-sizes["Votes"] // (2 << 20))
    events = pair.query("target", """
        SELECT at, table_name, kind FROM (
            SELECT loaded_at AS at, table_name, 'load' AS kind FROM so_luigi.loaded
            UNION ALL SELECT completed_at, table_name, 'complete' FROM so_luigi.tables) e ORDER BY at""")
    order = [(table, kind) for _, table, kind in events]
    for table in parts:
        last_load = max(i for i, e in enumerate(order) if e == (table, "load"))
        assert order[last_load + 1] == (table, "complete"), order


def test_planning_a_table_takes_one_connection_to_each_server(pair, monkeypatch):
    """A connection costs each server a process start: planning opens one per side, however
    many lookups it makes (it opened two of each before), and a table planned already is
    looked up through one destination connection."""
    import psycopg2
    from so_luigi import load
    from so_luigi.state import markers
    from so_luigi.config import source_endpoint, target_endpoint
    from so_luigi.dialects.postgres import connection as pg_connection

    sample.fill(pair.source(), scale=0.001, post_history=False, log=lambda *a: None)
    with pg_connection.session(target_endpoint()) as conn:
        markers.register_run(conn, "conns", source_endpoint(), target_endpoint())
    markers.shared_connection()         # the process's marker connection, open before planning
    opened, connect = [], psycopg2.connect
    monkeypatch.setattr(psycopg2, "connect", lambda *a, **k: opened.append(k["application_name"]) or connect(*a, **k))

    weights = load.ensure_planned("conns", "Votes", 1000, "auto", "streaming")
    assert len(weights) > 1
    assert sorted(opened) == ["so_luigi source", "so_luigi target"]

    opened.clear()
    table = load.discover(*load.endpoints(), ["Votes"])[0]
    opened.clear()
    assert load.ensure_planned("conns", "Votes", 1000, "auto", "streaming", table=table) == weights
    assert opened == ["so_luigi target"]
