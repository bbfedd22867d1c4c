"""Hardening: kill -9 at named moments of a run (both modes), two runs at once, a source that
changed between a failed run and its rerun, a cut source connection, a statement timeout.
Every case ends exact after a rerun, or stops with one clear line; nothing is loaded twice."""
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from so_luigi.testing import sample
from conftest import ROOT, assert_same_tables, kill_group, paused_at

TABLES = ["Users", "Votes", "Comments"]


# Luigi's pid lock (/tmp/luigi by default) takes a pid its file lists from an older run, reused
# since by this very process, for a run of the same command already going: a lock of our own
LOCKS = tempfile.mkdtemp(prefix="so_luigi-test-locks-")


def luigi_cmd(*args):
    return [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
            "--workers", "2", "--chunk-rows", "1500", "--lock-pid-dir", LOCKS, *args]


def loaded(pair):
    try:
        return {(t, p): at for t, p, at in pair.query("target", "SELECT table_name, partition, loaded_at "
                                                                "FROM so_luigi.loaded")}
    except Exception:  # noqa: BLE001 -- markers not created yet
        return {}


@pytest.fixture
def sourced(pair):
    sample.fill(pair.source(), scale=0.003, names=TABLES, log=lambda *a: None)
    return pair


@pytest.mark.parametrize("point,mode", [("plan-commit", "streaming"), ("load-commit", "streaming"),
                                        ("index-build", "streaming"), ("complete-commit", "streaming"),
                                        ("load-commit", "bulk"), ("extract-write", "bulk"),
                                        ("complete-commit", "bulk")])
def test_kill_9_at_a_named_moment_then_rerun_is_exact(sourced, point, mode):
    pair = sourced
    proc = paused_at(luigi_cmd("--mode", mode), pair.env(), point)
    before = loaded(pair)
    kill_group(proc)
    rerun = subprocess.run(luigi_cmd("--mode", mode), cwd=ROOT, env=pair.env(), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_tables(pair, TABLES)
    after = loaded(pair)
    assert all(after[k] == v for k, v in before.items())           # nothing loaded twice
    assert len(after) == pair.query("target", "SELECT count(*) FROM so_luigi.partitions")[0][0]


def test_two_runs_at_once_share_the_work_and_say_so(sourced):
    pair = sourced
    procs = [subprocess.Popen(luigi_cmd("--no-lock"), cwd=ROOT, env=pair.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert_same_tables(pair, TABLES)
    assert len(loaded(pair)) == pair.query("target", "SELECT count(*) FROM so_luigi.partitions")[0][0]
    # they shared the partitions, and a process that found one done says so
    workers = {w for (w,) in pair.query("target", "SELECT DISTINCT worker FROM so_luigi.loaded")}
    said = any("was loaded by another process meanwhile: skipped" in err for _, err in outs)
    assert len(workers) == 2 or said, (workers, said)


def test_source_changed_between_failed_run_and_rerun_is_refused_until_reset(sourced):
    pair = sourced
    kill_group(paused_at(luigi_cmd(), pair.env(), "load-commit"))
    pair.query("source", 'ALTER TABLE "Votes" ADD COLUMN "Note" text')
    refused = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0
    line = [l for l in refused.stderr.splitlines() if l.startswith("so_luigi: error:")]
    assert line and "changed since run 'default' planned it (column Note added)" in line[0] \
        and "so-luigi reset" in line[0], refused.stderr[-2000:]
    reset = subprocess.run([sys.executable, "-m", "so_luigi", "reset", "--tables", "Votes"], cwd=ROOT,
                           env=pair.env(), capture_output=True, text=True)
    assert reset.returncode == 0
    rerun = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_tables(pair, TABLES)


def kill_after_first_votes_partition(pair, *args):
    """Run Votes alone, kill -9 once its partition 0 is committed; returns the command to rerun."""
    import tempfile
    cmd = luigi_cmd("--tables", "Votes", "--workers", "1", *args)
    with tempfile.TemporaryFile("w+") as said:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=pair.env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=said)
        deadline = time.monotonic() + 120
        while ("Votes", 0) not in loaded(pair) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if ("Votes", 0) not in loaded(pair):
            said.seek(0)
            pytest.fail("Votes partition 0 was never committed; the run said: " + said.read()[-3000:])
    return cmd


@pytest.mark.parametrize("verify", ["full", "count", "tally"])
def test_rows_added_into_a_loaded_range_are_caught_by_verification(sourced, verify):
    """Resumed at its snapshot, a run never sees the row (test_snapshot.py); resumed from a new
    moment, the row falls in a loaded partition and verification catches the difference."""
    pair = sourced
    cmd = kill_after_first_votes_partition(pair, "--verify", verify)
    assert ("Votes", 0) in loaded(pair)
    pair.query("source", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'so_luigi snapshot holder' AND datname = current_database()")
    # id -5 falls in partition 0 (no lower bound), which is already loaded: the copy would miss it
    pair.query("source", 'INSERT INTO "Votes" ("Id", "PostId", "VoteTypeId", "CreationDate") VALUES (-5, 1, 2, now())')
    rerun = subprocess.run(cmd + ["--not-consistent"], cwd=ROOT, env=pair.env(), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode != 0
    line = [l for l in rerun.stderr.splitlines() if l.startswith("so_luigi: error:")]
    assert line and "Votes: row counts differ" in line[0] and "so-luigi reset" in line[0]
    assert ("(its COPY tallies)" in line[0]) == (verify == "tally")
    assert pair.query("target", "SELECT count(*) FROM so_luigi.tables WHERE completed_at IS NOT NULL") == [(0,)]


def test_cut_source_connection_is_retried(pair, tmp_path):
    # one 300 MB partition: its source COPY runs long enough to be cut in the middle
    pair.query("source", 'CREATE TABLE "Big" ("Id" int PRIMARY KEY, "Body" text NOT NULL); '
                         "INSERT INTO \"Big\" SELECT g, repeat(md5(g::text), 160) FROM generate_series(1, 60000) g")
    cfg = tmp_path / "r.cfg"
    cfg.write_text("[retries]\ntransient = 3\ndelay_seconds = 0.5\n")
    proc = subprocess.Popen(luigi_cmd("--chunk-rows", "1000000", "--buffer-mb", "8"), cwd=ROOT,
                            env=pair.env(LUIGI_CONFIG_PATH=str(cfg)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if pair.query("source", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                "application_name = 'so_luigi source' AND state = 'active' AND query LIKE 'COPY%%' "
                                "AND now() - query_start > interval '300 ms'"):
            break
        time.sleep(0.01)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "connection lost or server unavailable" in err and "retry 1 of 3" in err
    assert_same_tables(pair, ["Big"])


def test_statement_timeout_is_one_clear_line(sourced):
    pair = sourced
    pair.query("target", "CREATE ROLE so_slow LOGIN SUPERUSER; ALTER ROLE so_slow SET statement_timeout = '1ms'")
    try:
        url = pair.target_url.replace("postgres@", "so_slow@")
        out = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(SO_TARGET_URL=url), capture_output=True,
                             text=True, timeout=600)
        assert out.returncode != 0
        line = [l for l in out.stderr.splitlines() if l.startswith("so_luigi: error:")]
        # PostgreSQL says "statement timeout", or "user request" when the timeout races a cancel
        assert line and "canceling statement" in line[0] and "statement_timeout" in line[0], out.stderr[-2000:]
        assert "Traceback" not in out.stderr
    finally:
        pair.query("target", "DROP ROLE so_slow")


def test_destination_restart_mid_run_is_retried_or_stops_cleanly_and_rerun_is_exact(sourced, tmp_path):
    pair = sourced
    if not hasattr(pair.cluster, "restart"):
        pytest.skip("this PostgreSQL (pgserver) cannot be restarted by the tests")
    cfg = tmp_path / "r.cfg"
    cfg.write_text("[retries]\ntransient = 5\ndelay_seconds = 1\n")
    env = pair.env(LUIGI_CONFIG_PATH=str(cfg))
    proc = subprocess.Popen(luigi_cmd(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(loaded(pair)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    pair.cluster.restart()
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:                     # stopped: with one clear line
        assert any(l.startswith("so_luigi: error:") for l in err.splitlines()), err[-3000:]
        rerun = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
        if rerun.returncode != 0:                # the source's snapshot went with the server
            assert "--not-consistent" in rerun.stderr and "snapshot" in rerun.stderr, rerun.stderr[-3000:]
            rerun = subprocess.run(luigi_cmd("--not-consistent"), cwd=ROOT, env=pair.env(), capture_output=True,
                                   text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_tables(pair, TABLES)
    assert len(loaded(pair)) == pair.query("target", "SELECT count(*) FROM so_luigi.partitions")[0][0]


def test_least_privilege_roles_are_enough(sourced):
    """A read-only source login and a destination role that may only create in its database."""
    pair = sourced
    src_db, dst_db = pair.source_url.rsplit("/", 1)[1], pair.target_url.rsplit("/", 1)[1]
    pair.query("source", f'CREATE ROLE so_reader LOGIN; GRANT CONNECT ON DATABASE "{src_db}" TO so_reader; '
                         "GRANT USAGE ON SCHEMA public TO so_reader; GRANT SELECT ON ALL TABLES IN SCHEMA public TO so_reader")
    pair.query("target", f'CREATE ROLE so_writer LOGIN; GRANT CONNECT, CREATE ON DATABASE "{dst_db}" TO so_writer; '
                         "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        env = pair.env(SO_SOURCE_URL=pair.source_url.replace("postgres@", "so_reader@"),
                       SO_TARGET_URL=pair.target_url.replace("postgres@", "so_writer@"), SO_TARGET_SCHEMA="so")
        for mode in ("streaming", "bulk"):
            out = subprocess.run(luigi_cmd("--mode", mode, "--run-id", mode), cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-3000:]
            if mode == "bulk":       # no pg_read_server_files: the client streams the files
                assert "client streams the files" in out.stderr
            assert_same_tables(pair, TABLES, "public", "so")
            pair.query("target", "DROP SCHEMA so CASCADE")
    finally:
        pair.query("target", "DROP OWNED BY so_writer; DROP ROLE so_writer")
        pair.query("source", "DROP OWNED BY so_reader; DROP ROLE so_reader")


@pytest.mark.parametrize("verify", ["count", "tally"])
def test_a_row_deleted_from_the_destination_is_seen_by_count_and_not_by_tally(sourced, verify):
    """--verify tally trusts each partition's committed COPY count instead of counting the
    destination: what it gives up, exactly as the README says."""
    pair = sourced
    cmd = kill_after_first_votes_partition(pair, "--verify", verify)
    pair.query("target", 'DELETE FROM "Votes" WHERE "Id" = (SELECT min("Id") FROM "Votes")')
    rerun = subprocess.run(cmd, cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    source_rows = pair.query("source", 'SELECT count(*) FROM "Votes"')[0][0]
    if verify == "count":
        assert rerun.returncode != 0
        line = [l for l in rerun.stderr.splitlines() if l.startswith("so_luigi: error:")]
        assert line and f"Votes: row counts differ: source {source_rows}, destination {source_rows - 1}, " \
                        f"loaded markers {source_rows}" in line[0]
        assert pair.query("target", "SELECT count(*) FROM so_luigi.tables WHERE completed_at IS NOT NULL") == [(0,)]
    else:
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert pair.query("target", "SELECT verdict, rows FROM so_luigi.tables") == \
            [("ok: count vs COPY tallies", source_rows)]
        assert pair.query("target", 'SELECT count(*) FROM "Votes"') == [(source_rows - 1,)]


def test_a_changed_value_fails_the_content_checksum(sourced):
    """Counts agree, one value differs: verification must refuse to call the table complete."""
    pair = sourced
    cmd = kill_after_first_votes_partition(pair)
    pair.query("target", 'UPDATE "Votes" SET "VoteTypeId" = "VoteTypeId" + 1 WHERE "Id" = (SELECT min("Id") FROM "Votes")')
    rerun = subprocess.run(cmd, cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode != 0
    line = [l for l in rerun.stderr.splitlines() if l.startswith("so_luigi: error:")]
    assert line and "Votes: content checksum differs" in line[0]
    assert pair.query("target", "SELECT count(*) FROM so_luigi.tables WHERE completed_at IS NOT NULL") == [(0,)]
    # the key built beside the verification went with its transaction
    assert pair.query("target", "SELECT indexname FROM pg_indexes WHERE tablename = 'Votes'") == []


def test_readers_are_let_in_while_the_key_is_built_beside_verification(sourced):
    """The key and indexes are built while another session counts the table: the statements of
    that step must leave readers in, or the count would wait for a transaction that waits for it."""
    pair = sourced
    proc = paused_at(luigi_cmd("--tables", "Votes", "--workers", "1"), pair.env(), "index-build")
    try:
        held = pair.query("target", "SELECT l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                    "WHERE c.relname = 'Votes' AND l.granted AND l.pid <> pg_backend_pid()")
        assert ("ShareLock",) in held, held          # the finishing transaction is building the key
        assert pair.query("target", "SET lock_timeout = '5s'; SELECT count(*) FROM \"Votes\"") == \
            pair.query("source", 'SELECT count(*) FROM "Votes"')
    finally:
        kill_group(proc)
