"""Bulk mode beyond the shared end-to-end test (test_replicate): gzip and the client path,
a server that cannot see the files, UNLOGGED loads, a bulk dir that cannot be written, and a
kill during extract or load."""
import errno
import os
import signal
import subprocess
import sys

import pytest

from so_luigi import bulk
from so_luigi.testing import sample
from so_luigi.config import BulkSettings
from conftest import ROOT, assert_same_tables, frozen_pages

TABLES = ["Users", "Votes", "Comments", "VoteTypes"]


@pytest.fixture
def sourced(pair):
    sample.fill(pair.source(), scale=0.002, names=TABLES, log=lambda *a: None)
    return pair


def config(pair, text):
    path = os.path.join(pair.bulk_dir, "..", os.path.basename(pair.bulk_dir) + ".cfg")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_gzip_files_go_through_the_client_and_can_be_kept(sourced):
    pair = sourced
    cfg = config(pair, "[bulk]\ncompress = true\nkeep_files = true\n")
    result = pair.run("--mode", "bulk", "--chunk-rows", "3000", env=pair.env(LUIGI_CONFIG_PATH=cfg))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "client streams the files through COPY FROM STDIN (gzip files)" in result.stderr
    assert pair.query("target", "SELECT DISTINCT via FROM so_luigi.loaded") == [("client-file",)]
    kept = [f for _, _, files in os.walk(pair.bulk_dir) for f in files]
    assert kept and all(f.endswith((".csv.gz", ".json")) for f in kept)
    assert_same_tables(pair, TABLES)
    assert all(p[0] == p[2] for p in frozen_pages(pair.target_url).values())   # FREEZE from STDIN too


def test_server_that_cannot_see_the_files_falls_back_to_the_client(sourced):
    pair = sourced
    env = pair.env(SO_BULK_SERVER_DIR="/nonexistent/mount")
    result = pair.run("--mode", "bulk", "--chunk-rows", "3000", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "client streams the files through COPY FROM STDIN" in result.stderr
    assert "/nonexistent/mount" in result.stderr                       # and says why
    assert pair.query("target", "SELECT DISTINCT via FROM so_luigi.loaded") == [("client-file",)]
    assert_same_tables(pair, TABLES)


def test_unlogged_load_ends_logged_and_is_counted_even_under_verify_tally(sourced):
    pair = sourced
    cfg = config(pair, "[bulk]\nunlogged = true\n")
    result = pair.run("--mode", "bulk", "--chunk-rows", "3000", "--verify", "tally",
                      env=pair.env(LUIGI_CONFIG_PATH=cfg))
    assert result.returncode == 0, result.stderr[-3000:]
    persistence = pair.query("target", "SELECT DISTINCT c.relpersistence FROM pg_class c JOIN pg_namespace n "
                                       "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')")
    assert persistence == [("p",)]
    assert_same_tables(pair, TABLES)
    # a crash empties an unlogged table after its COPY counts were committed: it is scanned
    assert pair.query("target", "SELECT DISTINCT verdict FROM so_luigi.tables") == [("ok: count only",)]


def test_unwritable_bulk_dir_is_one_clear_line(sourced):
    pair = sourced
    result = pair.run("--mode", "bulk", env=pair.env(SO_BULK_DIR="/etc/hostname/bulk"))
    assert result.returncode != 0
    errors = [l for l in result.stderr.splitlines() if l.startswith("so_luigi: error:")]
    assert errors and "bulk dir /etc/hostname/bulk: cannot write" in errors[0] and "Not a directory" in errors[0]
    assert "Traceback" not in result.stderr
    assert pair.query("target", "SELECT count(*) FROM so_luigi.loaded") == [(0,)]


def test_full_disk_message_names_the_dir():
    settings = BulkSettings("/data/bulk", "/data/bulk", False, False, False)
    err = bulk._bulk_error(settings, "/data/bulk/x.csv", OSError(errno.ENOSPC, "No space left on device"))
    assert "bulk dir /data/bulk is full while writing /data/bulk/x.csv" in str(err)


def test_a_crashed_extract_never_leaves_a_file_that_looks_done(tmp_path):
    settings = BulkSettings(str(tmp_path), str(tmp_path), False, False, False)
    path = str(tmp_path / "run" / "T" / "000000.csv")

    def fill(fh):
        fh.write(b"1,x\n")
        raise RuntimeError("source died")
    with pytest.raises(RuntimeError):
        bulk.write_atomically(path, settings, fill)
    assert not os.path.exists(path) and os.listdir(os.path.dirname(path)) == []


@pytest.mark.parametrize("stage,rerun_format", [("extract", "csv"), ("load", "csv"), ("extract", "binary")])
def test_kill_9_during_bulk_then_rerun_reuses_files(sourced, stage, rerun_format):
    """A rerun reuses what was extracted, and loads each file in the format its manifest records,
    even when [bulk] format changed in between (the rest is then extracted as binary)."""
    import time
    pair = sourced
    env = pair.env(SO_BULK_KEEP_FILES="1")
    cmd = [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
           "--mode", "bulk", "--workers", "2", "--chunk-rows", "500"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def manifests():
        return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
                for d, _, files in os.walk(pair.bulk_dir) for f in files if f.endswith(".json")}

    def loaded():
        try:
            return pair.query("target", "SELECT table_name, partition, loaded_at FROM so_luigi.loaded")
        except Exception:  # noqa: BLE001 -- markers not created yet
            return []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (stage == "extract" and len(manifests()) >= 3) or (stage == "load" and len(loaded()) >= 3):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    files_before, loaded_before = manifests(), {(t, p): at for t, p, at in loaded()}
    assert files_before

    rerun = subprocess.run(cmd, cwd=ROOT, env=dict(env, SO_BULK_FORMAT=rerun_format), capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_tables(pair, TABLES)
    after = manifests()
    assert all(after[path] == mtime for path, mtime in files_before.items())    # not extracted again
    loaded_after = {(t, p): at for t, p, at in loaded()}
    assert all(loaded_after[k] == v for k, v in loaded_before.items())          # not loaded again
    if rerun_format == "binary":
        kept = [f for _, _, files in os.walk(pair.bulk_dir) for f in files if not f.endswith(".json")]
        assert any(f.endswith(".csv") for f in kept) and any(f.endswith(".pgcopy") for f in kept)


@pytest.mark.parametrize("compress", [False, True])
def test_binary_files_copy_exactly_through_the_server_and_the_client(sourced, compress):
    """[bulk] format = binary: PostgreSQL's binary COPY files, read by the server itself (or,
    gzipped, streamed by the client), frozen like CSV ones; the manifest says the format, so a
    load reads what the extract wrote even after the setting changed."""
    pair = sourced
    cfg = config(pair, f"[bulk]\nformat = binary\ncompress = {str(compress).lower()}\nkeep_files = true\n")
    result = pair.run("--mode", "bulk", "--chunk-rows", "3000", env=pair.env(LUIGI_CONFIG_PATH=cfg))
    assert result.returncode == 0, result.stderr[-3000:]
    via = "client-file" if compress else "server-file"
    assert pair.query("target", "SELECT DISTINCT via FROM so_luigi.loaded") == [(via,)]
    kept = [os.path.join(d, f) for d, _, files in os.walk(pair.bulk_dir) for f in files]
    data = [f for f in kept if not f.endswith(".json")]
    assert data and all(f.endswith(".pgcopy.gz" if compress else ".pgcopy") for f in data)
    opener = __import__("gzip").open if compress else open
    with opener(data[0], "rb") as fh:
        assert fh.read(11) == b"PGCOPY\n\xff\r\n\x00"          # the binary COPY signature
    assert_same_tables(pair, TABLES)
    assert all(p[0] == p[2] for p in frozen_pages(pair.target_url).values())


def test_binary_format_needs_a_postgresql_source_and_a_known_name(pair):
    env = pair.env(SO_BULK_FORMAT="binary", SO_SOURCE_URL="mssql://sa:pw@127.0.0.1:1/master")
    result = pair.run("--mode", "bulk", env=env)
    assert result.returncode != 0
    assert "[bulk] format = binary (SO_BULK_FORMAT) is PostgreSQL's own COPY format" in result.stderr
    assert "Traceback" not in result.stderr
    result = pair.run("--mode", "bulk", env=pair.env(SO_BULK_FORMAT="parquet"))
    assert result.returncode != 0
    assert "SO_BULK_FORMAT='parquet': use csv or binary" in result.stderr
    assert "Traceback" not in result.stderr


def test_binary_is_chosen_only_where_the_types_travel_unchanged():
    """binary needs the destination to keep every column's type (a type override makes the
    table CSV again) and a PostgreSQL source; csv is the default."""
    from so_luigi.config import Endpoint, parse_url
    from so_luigi.dialects.base import Column, Table
    from so_luigi.dialects import source
    pg_source = source(Endpoint(parse_url("postgresql://u@h/db", "source"), "public", "source"))
    ms_source = source(Endpoint(parse_url("mssql://u:p@h:1433/db", "source"), "dbo", "source"))
    same = Table("public", "t", [Column("Id", "integer", source_type="integer", pg_type="integer")])
    changed = Table("public", "t", [Column("Id", "integer", source_type="integer", pg_type="bigint")])
    binary = BulkSettings("/b", "/b", False, False, False, "binary")
    assert bulk.file_format(binary, pg_source, same) == "binary"
    assert bulk.file_format(binary, pg_source, changed) == "csv"
    assert bulk.file_format(binary, ms_source, same) == "csv"
    assert bulk.file_format(BulkSettings("/b", "/b", False, False, False), pg_source, same) == "csv"
    assert bulk.files_for("r", "t", 3, binary, "binary").data.endswith("/r/t/000003.pgcopy")


def test_local_files_go_through_smart_open_gzip_at_its_fastest_level(tmp_path):
    """Local and remote bulk files share one path (smart_open); gzip at level 1, as the files are
    read once, soon (the gzip header's XFL byte says 4 for the fastest level)."""
    import gzip
    settings = BulkSettings(str(tmp_path), str(tmp_path), True, False, False)
    path = str(tmp_path / "run" / "T" / "000000.csv.gz")
    assert bulk.write_atomically(path, settings, lambda fh: fh.write(b"1,x\n" * 1000)) == 4000
    with open(path, "rb") as fh:
        assert fh.read(10)[8] == 4
    with gzip.open(path, "rb") as fh:
        assert fh.read() == b"1,x\n" * 1000
    plain = str(tmp_path / "run" / "T" / "000001.csv")
    bulk.write_atomically(plain, settings, lambda fh: fh.write(b"2,y\n"))
    with open(plain, "rb") as fh:
        assert fh.read() == b"2,y\n"


def test_a_file_cut_for_another_plan_is_never_loaded_and_reset_removes_a_tables_files(sourced):
    """Files kept from a plan that is gone (its markers deleted behind the files' back, as a reset
    of another host or an earlier release left them) are extracted again, not loaded; `reset`
    removes the files of the tables it forgets, kept or not."""
    pair = sourced
    cfg = config(pair, "[bulk]\nkeep_files = true\n")
    env = pair.env(LUIGI_CONFIG_PATH=cfg)
    assert pair.run("--mode", "bulk", "--chunk-rows", "3000", "--tables", "Users,Votes", env=env).returncode == 0
    votes_dir = os.path.join(pair.bulk_dir, "default", "Votes")
    old = sorted(os.listdir(votes_dir))
    assert old and any(f.endswith(".csv") for f in old)
    for name in ("loaded", "partitions", "tables", "replications"):
        pair.query("target", f"DELETE FROM so_luigi.{name} WHERE run_id = 'default'"
                             + (" AND table_name = 'Votes'" if name != "replications" else ""))
    pair.query("source", 'UPDATE "Votes" SET "VoteTypeId" = "VoteTypeId" + 1 WHERE "Id" % 7 = 0')
    # the first run's snapshot, from before the update, must not be the one the rerun reads at
    pair.query("source", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'so_luigi snapshot holder' AND datname = current_database()")
    # Users was read at the first run's snapshot, gone with that run: Votes comes from a new one
    rerun = pair.run("--mode", "bulk", "--chunk-rows", "3000", "--tables", "Users,Votes", "--not-consistent", env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_tables(pair, ["Users", "Votes"])            # the new rows, not the old files'
    reset = subprocess.run([sys.executable, "-m", "so_luigi", "reset", "--tables", "Votes"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert reset.returncode == 0, reset.stderr
    assert not os.path.exists(votes_dir) and os.listdir(os.path.join(pair.bulk_dir, "default", "Users"))


def test_loading_a_file_of_another_plan_is_refused():
    planned = ("p2", 100, 200, "s1")
    assert bulk.cut_for({"plan": "p2", "lo": 100, "hi": 200, "snapshot": "s1"}, planned)
    assert not bulk.cut_for({"plan": "p1", "lo": 100, "hi": 200, "snapshot": "s1"}, planned)
    assert not bulk.cut_for({"plan": "p2", "lo": 100, "hi": 300, "snapshot": "s1"}, planned)
    assert not bulk.cut_for({"plan": "p2", "lo": 100, "hi": 200, "snapshot": "s0"}, planned)   # read at a lost one
    assert not bulk.cut_for({"lo": 100, "hi": 200}, planned)              # an earlier release's manifest
    assert not bulk.cut_for({"plan": "p2", "lo": 100, "hi": 200, "snapshot": "s1"}, None)    # the table is not planned
    assert bulk.cut_for({"plan": "p2", "lo": 100, "hi": 200, "snapshot": None}, ("p2", 100, 200, None))  # no snapshots
