"""Kill the run at any moment, run the same command again: exact data, nothing loaded twice."""
import os
import signal
import subprocess
import sys
import time

import pytest

from so_luigi.testing import sample
from conftest import ROOT, assert_same_tables

TABLES = sample.table_names()
ARGS = ["--workers", "2", "--chunk-rows", "1500"]


def luigi_cmd(*args):
    return [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
            *ARGS, *args]


def markers(pair):
    try:
        return pair.query("target", "SELECT table_name, partition, loaded_at, worker FROM so_luigi.loaded")
    except Exception:  # noqa: BLE001 -- marker schema not created yet
        return []


def wait_for(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def sourced(pair):
    sample.fill(pair.source(), scale=0.006, log=lambda *a: None)
    return pair


@pytest.mark.parametrize("after_markers,mode", [(0, "streaming"), (3, "streaming"), (25, "streaming"),
                                               (10, "bulk")])
def test_kill_9_then_rerun_is_exact_and_reloads_only_missing_partitions(sourced, after_markers, mode):
    pair = sourced
    proc = subprocess.Popen(luigi_cmd("--mode", mode), cwd=ROOT, env=pair.env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if after_markers == 0:
            # during planning/creating: as soon as a destination table exists
            assert wait_for(lambda: pair.query("target", "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                                                         "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                                                         "AND c.relkind = 'r'")[0][0] > 0)
        else:
            assert wait_for(lambda: len(markers(pair)) >= after_markers)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)          # the luigi process and its forked workers
        proc.wait()
    before = {(t, p): (at, w) for t, p, at, w in markers(pair)}
    complete = pair.query("target", "SELECT count(*) FROM so_luigi.tables WHERE completed_at IS NOT NULL") \
        if before else [(0,)]
    assert complete[0][0] < len(TABLES), "the kill came too late to test anything"

    rerun = subprocess.run(luigi_cmd("--mode", mode), cwd=ROOT, env=pair.env(), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_tables(pair, TABLES)
    after = {(t, p): (at, w) for t, p, at, w in markers(pair)}
    # every partition loaded before the kill kept its marker untouched: it was not loaded again
    assert all(after[k] == v for k, v in before.items())
    assert len(after) > len(before)
    # and no partition has two markers or went missing
    planned = pair.query("target", "SELECT count(*) FROM so_luigi.partitions")[0][0]
    assert planned == len(after)


def kill_a_copy_during(pair, proc):
    """pg_terminate_backend on the destination session of a running COPY, once."""
    def terminate_a_copy():
        return bool(pair.query("target", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE datname = current_database() AND query LIKE 'COPY %%FROM STDIN%%' "
                                         "AND pid <> pg_backend_pid()"))
    assert wait_for(terminate_a_copy)
    return proc.communicate(timeout=600)


def retry_config(tmp_path, transient):
    path = tmp_path / "retries.cfg"
    path.write_text(f"[retries]\ntransient = {transient}\ndelay_seconds = 0.5\n")
    return str(path)


def test_dropped_connection_is_retried_and_the_run_ends_exact(sourced, tmp_path):
    pair = sourced
    env = pair.env(LUIGI_CONFIG_PATH=retry_config(tmp_path, 3))
    proc = subprocess.Popen(luigi_cmd(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = kill_a_copy_during(pair, proc)
    assert proc.returncode == 0, err[-3000:]
    assert "connection lost or server unavailable" in err and "retry 1 of 3" in err
    assert_same_tables(pair, TABLES)


def test_without_retries_a_dropped_connection_fails_clearly_and_rerun_finishes(sourced, tmp_path):
    pair = sourced
    env = pair.env(LUIGI_CONFIG_PATH=retry_config(tmp_path, 0))
    proc = subprocess.Popen(luigi_cmd(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = kill_a_copy_during(pair, proc)
    assert proc.returncode != 0
    assert "so_luigi: error:" in err and "connection lost or server unavailable" in err
    rerun = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_tables(pair, TABLES)
