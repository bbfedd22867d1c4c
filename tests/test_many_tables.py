"""Many small tables: a few CopyTables tasks copy them, each table loaded, verified and marked
once, a foreign key across two groups added after both; a run killed in the middle of a group
resumes at its first table not complete and loads nothing twice.

Tables under 1 MB that are surely one partition are planned by their CopyTables, all of a group
in one transaction (load.copy_unplanned): by their statistics (ANALYZEd), or by the most rows
their heap can hold. Tables without statistics whose heap could hold more than half a partition
(``--chunk-rows 300``: a page holds up to 291 rows) are planned first, one by one, and copied
one transaction each (load.copy_at_once). Both ways are tried."""
import re
import subprocess
import sys
import threading

import pytest

from so_luigi import tasks
from conftest import ROOT, assert_same_tables, kill_group

TABLES = [f"t{i:03d}" for i in range(90)]


def many(pair, names, analyzed=False):
    """Small tables (a key, a text, a timestamp, a numeric; a unique index on the text) of a few
    rows each; the last one references the first (a key across two CopyTables groups).
    ``analyzed``: with statistics, so they are planned as they are copied."""
    statements = [f'CREATE TABLE "{t}" ("Id" int PRIMARY KEY, label text NOT NULL UNIQUE, at timestamptz, '
                  f'amount numeric(10, 2)); INSERT INTO "{t}" SELECT g, md5(g::text || {n}), '
                  f"timestamptz '2020-01-01 00:00+00' + g * interval '1 day', g * 0.25 "
                  f"FROM generate_series(1, {10 if n == 0 else 3 + n % 7}) g;" for n, t in enumerate(names)]
    statements.append(f'ALTER TABLE "{names[-1]}" ADD CONSTRAINT last_first FOREIGN KEY ("Id") '
                      f'REFERENCES "{names[0]}" ("Id")')
    pair.query("source", "".join(statements))
    if analyzed:
        pair.query("source", "ANALYZE")


PLANNED_FIRST = ["--chunk-rows", "300"]       # without statistics, a page may hold more than 150 rows


def luigi_cmd(workers, *extra):
    return [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
            "--workers", str(workers), *extra]


def each_once(pair, names):
    """Every table complete and verified by count and checksum, with one loaded marker."""
    done = dict(pair.query("target", "SELECT table_name, verdict FROM so_luigi.tables WHERE completed_at IS NOT NULL"))
    assert sorted(done) == sorted(names)
    assert set(done.values()) == {"ok: count+checksum"}
    loads = dict(pair.query("target", "SELECT table_name, count(*) FROM so_luigi.loaded GROUP BY 1"))
    assert loads == {t: 1 for t in names}


def killed_at_pause(pair, nth, seconds, *extra):
    """A one-worker run killed -9 in its ``nth`` pause before a load's commit."""
    run = subprocess.Popen(luigi_cmd(1, *extra), cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True,
                           env={**pair.env(), "SO_LUIGI_PAUSE_AT": "load-commit", "SO_LUIGI_PAUSE_SECONDS": seconds})
    reached, said = threading.Event(), []

    def read():
        for line in run.stderr:
            said.append(line)
            if sum("paused at load-commit" in s for s in said) == nth:
                reached.set()
    threading.Thread(target=read, daemon=True).start()
    assert reached.wait(300), "".join(said[-30:])
    kill_group(run)


@pytest.mark.parametrize("analyzed", [False, True], ids=["planned-first", "planned-as-copied"])
def test_many_small_tables_share_a_few_tasks_and_each_is_verified_once(pair, analyzed):
    many(pair, TABLES, analyzed)
    how = [] if analyzed else PLANNED_FIRST
    result = pair.run("--workers", "2", *how)
    assert result.returncode == 0, result.stderr[-3000:]
    groups = -(-len(TABLES) // tasks.BATCH_TABLES)
    ran = re.search(r"(\d+) ran successfully", result.stderr)
    assert ran and int(ran.group(1)) == groups + 2, result.stderr[-3000:]   # + the key, + ReplicateAll
    assert f"{groups} CopyTables" in result.stderr
    assert "CompleteTable" not in result.stderr and "LoadPartition" not in result.stderr
    # planned with the rows (no plan before a CopyTables ran), or all before any
    first_load = pair.query("target", "SELECT min(loaded_at) FROM so_luigi.loaded")[0][0]
    planned_late = pair.query("target", "SELECT count(*) FROM so_luigi.tables WHERE planned_at >= %s", (first_load,))
    assert (planned_late[0][0] > 0) == analyzed, (planned_late, analyzed)
    each_once(pair, TABLES)
    assert_same_tables(pair, TABLES)
    assert pair.query("target", "SELECT convalidated FROM pg_constraint WHERE conname = 'last_first'") == [(True,)]
    unique = pair.query("target", "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                                  "WHERE c.relname LIKE 't%%' AND i.indisunique AND NOT i.indisprimary")
    assert unique == [(len(TABLES),)]
    # each table's seconds are its own work, not also its wait for a worker since planning (which
    # is most of it: 90 tables, two at a time; a table planned as it is copied has no such wait)
    (own, since_planned), = pair.query("target", "SELECT sum(seconds), sum(extract(epoch FROM completed_at - "
                                                 "planned_at)) FROM so_luigi.tables")
    assert 0 < own and (analyzed or own < float(since_planned) / 2), (own, since_planned)
    # a run of many tables: status lists none complete one by one, and counts them
    status = subprocess.run([sys.executable, "-m", "so_luigi", "status"], cwd=ROOT, env=pair.env(),
                            capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert not re.search(r"^t0", status.stdout, re.M), status.stdout
    assert f"and {len(TABLES)} complete tables not listed ({len(TABLES)} ok: count+checksum" in status.stdout
    assert f"of {len(TABLES)} tables, 0 not complete" in status.stdout
    every = subprocess.run([sys.executable, "-m", "so_luigi", "status", "--all"], cwd=ROOT, env=pair.env(),
                           capture_output=True, text=True).stdout
    assert len(re.findall(r"^t0\d\d .* ok: count\+checksum$", every, re.M)) == len(TABLES), every
    again = pair.run("--workers", "2", *how)
    assert again.returncode == 0, again.stderr[-3000:]
    each_once(pair, TABLES)


def test_a_group_killed_midway_resumes_at_its_first_table_not_complete(pair):
    names = TABLES[:30]
    many(pair, names)
    # each table's load pauses a moment before its commit; the run is killed in the twelfth one
    killed_at_pause(pair, 12, "0.2", *PLANNED_FIRST)
    before = dict(pair.query("target", "SELECT table_name, loaded_at FROM so_luigi.loaded"))
    complete = pair.query("target", "SELECT count(*) FROM so_luigi.tables WHERE completed_at IS NOT NULL")[0][0]
    assert 10 <= len(before) <= 11 and complete <= len(before), (before, complete)
    rerun = subprocess.run(luigi_cmd(2, *PLANNED_FIRST), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    each_once(pair, names)
    after = dict(pair.query("target", "SELECT table_name, loaded_at FROM so_luigi.loaded"))
    assert all(after[t] == at for t, at in before.items())      # nothing loaded twice
    assert_same_tables(pair, names)


def test_a_group_planned_as_copied_and_killed_before_its_commit_leaves_nothing_and_resumes(pair):
    names = TABLES[:50]             # two groups: the first to run commits, the other is killed
    many(pair, names)               # no statistics: known small by the rows their heap can hold
    killed_at_pause(pair, 2, "3")         # a group pauses once, before its commit
    planned = [t for t, in pair.query("target", "SELECT table_name FROM so_luigi.tables")]
    complete = [t for t, in pair.query("target", "SELECT table_name FROM so_luigi.tables "
                                                 "WHERE completed_at IS NOT NULL")]
    groups = [names[:tasks.BATCH_TABLES], names[tasks.BATCH_TABLES:]]
    assert sorted(planned) == sorted(complete) and sorted(complete) in groups, complete  # one group, whole
    left = [t for t in names if t not in complete]
    made = pair.query("target", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename "
                                f"IN ({', '.join(['%s'] * len(left))})", left)
    assert made == [(0,)]           # the killed group created no table either
    before = dict(pair.query("target", "SELECT table_name, loaded_at FROM so_luigi.loaded"))
    rerun = subprocess.run(luigi_cmd(2), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    each_once(pair, names)
    after = dict(pair.query("target", "SELECT table_name, loaded_at FROM so_luigi.loaded"))
    assert all(after[t] == at for t, at in before.items())
    assert_same_tables(pair, names)


def mended_then_exact(pair, names, mend):
    """After ``mend`` (SQL on the destination), the rerun copies every table exactly, once."""
    pair.query("target", mend)
    again = pair.run("--workers", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    each_once(pair, names)
    assert_same_tables(pair, names)


def test_someone_elses_table_in_the_way_of_a_tiny_table_stops_the_run_before_any_row_moves(pair):
    names = TABLES[:12]
    many(pair, names, analyzed=True)
    pair.query("target", 'CREATE TABLE public."t005" (x int)')     # someone else's table in the way
    result = pair.run("--workers", "1")
    assert result.returncode != 0
    assert "destination table public.t005 already exists and was not created by so_luigi" in result.stderr
    assert pair.query("target", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(1,)]
    mended_then_exact(pair, names, 'DROP TABLE public."t005"')


def test_one_table_failing_in_a_group_is_named_and_the_others_are_copied_one_by_one(pair):
    """The destination refuses one table's creation only as the group creates it (an event
    trigger): the group rolls back, its tables go one by one, the error names the table, the
    tables before it are kept, and once the trigger is gone the rerun is exact."""
    names = TABLES[:12]
    many(pair, names, analyzed=True)
    pair.query("target", """
        CREATE FUNCTION no_t005() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() WHERE object_identity = 'public.t005') THEN
            RAISE EXCEPTION 'no t005 here';
          END IF;
        END $$;
        CREATE EVENT TRIGGER no_t005 ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION no_t005()""")
    result = pair.run("--workers", "1")
    assert result.returncode != 0
    assert "copying them one by one" in result.stderr
    assert re.search(r"^so_luigi: error: .*no t005 here", result.stderr, re.M), result.stderr[-3000:]
    complete = {t for t, in pair.query("target", "SELECT table_name FROM so_luigi.tables WHERE completed_at IS NOT NULL")}
    assert {"t000", "t001", "t002", "t003", "t004"} <= complete and "t005" not in complete, complete
    mended_then_exact(pair, names, "DROP EVENT TRIGGER no_t005")


def test_a_group_with_json_and_a_refused_default_stays_one_transaction(pair):
    """Tiny tables whose copy meets a failed statement inside the group's transaction: a json
    column (no hash function: the row-hash probe fails, in a savepoint of the shared source
    session) and a default the destination refuses (a function only the source has, with
    --tables: in a savepoint of the destination's transaction, left so COPY FREEZE still
    applies). The group commits as one; nothing goes table by table."""
    pair.query("source", """
        CREATE FUNCTION only_here() RETURNS int LANGUAGE sql AS 'SELECT 7';
        CREATE TABLE docs (id int PRIMARY KEY, body json, n int DEFAULT only_here());
        INSERT INTO docs SELECT g, json_build_object('g', g), g FROM generate_series(1, 5) g;
        CREATE TABLE plain (id int PRIMARY KEY, label text);
        INSERT INTO plain SELECT g, md5(g::text) FROM generate_series(1, 5) g;
        ANALYZE""")
    result = pair.run("--workers", "1", "--tables", "docs,plain", "--accept-not-carried")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "one by one" not in result.stderr, result.stderr[-3000:]
    assert re.search(r"default of n .*only_here.*the destination refused it", result.stdout), result.stdout
    assert "planned docs" not in result.stderr     # plan_table's words: planned as copied, not before
    assert pair.query("target", "SELECT count(*) FROM so_luigi.loaded") == [(2,)]
    each = dict(pair.query("target", "SELECT table_name, verdict FROM so_luigi.tables"))
    assert each == {"docs": "ok: count+checksum", "plain": "ok: count+checksum"}, each
    assert pair.query("target", "SELECT count(*), sum(n) FROM docs") == [(5, 15)]
