"""A PostgreSQL source copied as of one snapshot while other sessions keep writing to it: the
invariants every source transaction keeps hold in the destination, a killed run resumes at the
same moment, and a resume after the snapshot is gone refuses, or goes on only when told to and
says the copy is not consistent."""
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from conftest import ROOT, kill_group, paused_at

ACCOUNTS, BALANCE = 20_000, 100


def luigi_cmd(*args):
    return [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
            "--workers", "2", "--chunk-rows", "1000", *args]


def make_bank(pair):
    """accounts (a sum every transfer keeps), events and their count kept beside them."""
    pair.query("source", f"""
        CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
        INSERT INTO accounts SELECT g, {BALANCE} FROM generate_series(1, {ACCOUNTS}) g;
        CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account int NOT NULL,
                             amount bigint NOT NULL, note text);
        INSERT INTO events (account, amount, note) SELECT g % {ACCOUNTS} + 1, 0, repeat('x', 50)
            FROM generate_series(1, 20000) g;
        CREATE TABLE tally (name text PRIMARY KEY, n bigint NOT NULL);
        INSERT INTO tally VALUES ('events', 20000);
        ANALYZE""")


class Writer:
    """Transfers between two random accounts, an event inserted (or the oldest deleted) and the
    tally moved with it, each in its own transaction, as fast as one session goes."""

    def __init__(self, url):
        self.conn = psycopg2.connect(url)
        self.stop = threading.Event()
        self.commits = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import random
        rnd = random.Random(7)
        cur = self.conn.cursor()
        while not self.stop.is_set():
            a, b, x = rnd.randint(1, ACCOUNTS), rnd.randint(1, ACCOUNTS), rnd.randint(1, 50)
            cur.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (x, a))
            cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (x, b))
            if rnd.random() < 0.5:
                cur.execute("INSERT INTO events (account, amount, note) VALUES (%s, %s, 'transfer')", (a, x))
                cur.execute("UPDATE tally SET n = n + 1 WHERE name = 'events'")
            else:
                cur.execute("DELETE FROM events WHERE id = (SELECT min(id) FROM events)")
                cur.execute("UPDATE tally SET n = n - %s WHERE name = 'events'", (cur.rowcount,))
            self.conn.commit()
            self.commits += 1

    def finish(self):
        self.stop.set()
        self.thread.join()
        self.conn.close()
        return self.commits


def invariants(pair, which):
    return pair.query(which, "SELECT (SELECT sum(balance) FROM accounts), (SELECT count(*) FROM accounts), "
                             "(SELECT count(*) FROM events) - (SELECT n FROM tally WHERE name = 'events')")[0]


def snapshot_of(pair):
    return pair.query("target", "SELECT source_snapshot, source_read FROM so_luigi.runs")[0]


def holder_sessions(pair):
    return pair.query("source", "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND application_name = 'so_luigi snapshot holder'")[0][0]


@pytest.fixture
def bank(pair):
    make_bank(pair)
    return pair


def test_a_copy_while_others_write_equals_the_source_at_one_moment(bank):
    pair = bank
    writer = Writer(pair.source_url)
    try:
        time.sleep(0.5)
        out = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    finally:
        commits = writer.finish()
    assert out.returncode == 0, out.stderr[-3000:]
    assert commits > 100                               # the source really moved during the copy
    assert invariants(pair, "target") == (ACCOUNTS * BALANCE, ACCOUNTS, 0)
    snapshot, said = snapshot_of(pair)
    assert snapshot and said.startswith(f"consistent: the source as of snapshot {snapshot}")
    assert f"source: consistent: the source as of snapshot {snapshot}" in out.stdout
    # the run replicated: its holder lets the snapshot go
    deadline = time.monotonic() + 30
    while holder_sessions(pair) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert holder_sessions(pair) == 0


def run_until_paused(pair, point, *args):
    kill_group(paused_at(luigi_cmd(*args), pair.env(), point))


def test_a_killed_run_resumes_at_the_same_moment(bank):
    pair = bank
    run_until_paused(pair, "load-commit")
    snapshot, _ = snapshot_of(pair)
    writer = Writer(pair.source_url)                   # the source moves on between the two runs
    time.sleep(1)
    commits = writer.finish()
    assert commits > 10 and invariants(pair, "source")[0] == ACCOUNTS * BALANCE
    rerun = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert snapshot_of(pair)[0] == snapshot            # read at the first run's moment, not the rerun's
    assert invariants(pair, "target") == (ACCOUNTS * BALANCE, ACCOUNTS, 0)
    first_events = pair.query("target", "SELECT min(id) FROM events")[0][0]
    assert first_events == 1                           # the writer's deletes came after the snapshot


def test_a_resume_without_its_snapshot_refuses_or_says_it_is_not_consistent(bank):
    pair = bank
    run_until_paused(pair, "complete-commit")          # a table's partitions loaded, others to go
    assert pair.query("target", "SELECT count(*) > 0 FROM so_luigi.loaded") == [(True,)]
    snapshot, _ = snapshot_of(pair)
    # the holder's session ends (a source restart would do the same): the moment is gone
    pair.query("source", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                         "AND application_name = 'so_luigi snapshot holder'")
    refused = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0
    line = [l for l in refused.stderr.splitlines() if l.startswith("so_luigi: error:")][0]
    assert f"source snapshot {snapshot}" in line and "so-luigi reset --run-id default" in line
    assert "--not-consistent" in line
    resumed = subprocess.run(luigi_cmd("--not-consistent"), cwd=ROOT, env=pair.env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    new, said = snapshot_of(pair)
    assert new != snapshot and said.startswith("not consistent")
    assert "source: not consistent" in resumed.stdout
