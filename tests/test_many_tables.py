"""Many small tables: a few CopyTables tasks copy them, each table loaded, verified and marked
once, a foreign key across two groups added after both; a run killed in the middle of a group
resumes at its first table not complete and loads nothing twice."""
import re
import subprocess
import sys
import threading

from so_luigi import tasks
from conftest import ROOT, assert_same_tables, kill_group

TABLES = [f"t{i:03d}" for i in range(90)]


def many(pair, names):
    """Small tables (a key, a text, a timestamp, a numeric; a unique index on the text) of a few
    rows each; the last one references the first (a key across two CopyTables groups)."""
    statements = [f'CREATE TABLE "{t}" ("Id" int PRIMARY KEY, label text NOT NULL UNIQUE, at timestamptz, '
                  f'amount numeric(10, 2)); INSERT INTO "{t}" SELECT g, md5(g::text || {n}), '
                  f"timestamptz '2020-01-01 00:00+00' + g * interval '1 day', g * 0.25 "
                  f"FROM generate_series(1, {10 if n == 0 else 3 + n % 7}) g;" for n, t in enumerate(names)]
    statements.append(f'ALTER TABLE "{names[-1]}" ADD CONSTRAINT last_first FOREIGN KEY ("Id") '
                      f'REFERENCES "{names[0]}" ("Id")')
    pair.query("source", "".join(statements))


def luigi_cmd(workers):
    return [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
            "--workers", str(workers)]


def each_once(pair, names):
    """Every table complete and verified by count and checksum, with one loaded marker."""
    done = dict(pair.query("target", "SELECT table_name, verdict FROM so_luigi.tables WHERE completed_at IS NOT NULL"))
    assert sorted(done) == sorted(names)
    assert set(done.values()) == {"ok: count+checksum"}
    loads = dict(pair.query("target", "SELECT table_name, count(*) FROM so_luigi.loaded GROUP BY 1"))
    assert loads == {t: 1 for t in names}


def test_many_small_tables_share_a_few_tasks_and_each_is_verified_once(pair):
    many(pair, TABLES)
    result = pair.run("--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    groups = -(-len(TABLES) // tasks.BATCH_TABLES)
    ran = re.search(r"(\d+) ran successfully", result.stderr)
    assert ran and int(ran.group(1)) == groups + 2, result.stderr[-3000:]   # + the key, + ReplicateAll
    assert f"{groups} CopyTables" in result.stderr
    assert "CompleteTable" not in result.stderr and "LoadPartition" not in result.stderr
    each_once(pair, TABLES)
    assert_same_tables(pair, TABLES)
    assert pair.query("target", "SELECT convalidated FROM pg_constraint WHERE conname = 'last_first'") == [(True,)]
    unique = pair.query("target", "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                                  "WHERE c.relname LIKE 't%%' AND i.indisunique AND NOT i.indisprimary")
    assert unique == [(len(TABLES),)]
    # each table's seconds are its own work, not also its wait for a worker since planning (which
    # is most of it: 90 tables, two at a time)
    (own, since_planned), = pair.query("target", "SELECT sum(seconds), sum(extract(epoch FROM completed_at - "
                                                 "planned_at)) FROM so_luigi.tables")
    assert own < float(since_planned) / 2, (own, since_planned)
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
    again = pair.run("--workers", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    each_once(pair, TABLES)


def test_a_group_killed_midway_resumes_at_its_first_table_not_complete(pair):
    names = TABLES[:30]
    many(pair, names)
    # each table's load pauses a moment before its commit; the run is killed in the twelfth one
    proc = subprocess.Popen(luigi_cmd(1), cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env={**pair.env(), "SO_LUIGI_PAUSE_AT": "load-commit", "SO_LUIGI_PAUSE_SECONDS": "0.2"})
    reached = threading.Event()
    said = []

    def read():
        for line in proc.stderr:
            said.append(line)
            if sum("paused at load-commit" in s for s in said) == 12:
                reached.set()
    threading.Thread(target=read, daemon=True).start()
    assert reached.wait(300), "".join(said[-30:])
    kill_group(proc)
    before = dict(pair.query("target", "SELECT table_name, loaded_at FROM so_luigi.loaded"))
    complete = pair.query("target", "SELECT count(*) FROM so_luigi.tables WHERE completed_at IS NOT NULL")[0][0]
    assert 10 <= len(before) <= 11 and complete <= len(before), (before, complete)
    rerun = subprocess.run(luigi_cmd(2), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    each_once(pair, names)
    after = dict(pair.query("target", "SELECT table_name, loaded_at FROM so_luigi.loaded"))
    assert all(after[t] == at for t, at in before.items())      # nothing loaded twice
    assert_same_tables(pair, names)
