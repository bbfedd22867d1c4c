"""A PostgreSQL source copied as of one snapshot while other sessions keep writing to it: the
invariants every source transaction keeps hold in the destination, a killed run resumes at the
same moment, and a run whose snapshot is lost (between runs, or its sessions terminated again and
again during one) proves at a new one what it read at the old, and ends consistent as of it."""
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


def recovered(out):
    """(proven, recopied) of the report's line on a lost snapshot, or None."""
    import re
    found = re.search(r"recovered from a lost source snapshot: (\d+) partition\(s\) proven equal to the source at "
                      r"the new one, (\d+) recopied", out)
    return (int(found[1]), int(found[2])) if found else None


def kill_holder(pair):
    pair.query("source", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                         "AND application_name = 'so_luigi snapshot holder'")


def test_a_resume_without_its_snapshot_proves_what_was_read_at_a_new_one(bank):
    """The holder's session ends between two runs (a source restart would do the same) while
    the source moves on: the rerun takes a new snapshot, proves each loaded partition at it
    (recopying those the writer changed), and the copy is consistent as of the new moment."""
    pair = bank
    run_until_paused(pair, "complete-commit")          # a table's partitions loaded, others to go
    before = pair.query("target", "SELECT count(*) FROM so_luigi.loaded")[0][0]
    assert before > 0
    snapshot, _ = snapshot_of(pair)
    kill_holder(pair)
    writer = Writer(pair.source_url)                   # the source moves on
    time.sleep(1)
    assert writer.finish() > 10
    # and surely changes a row of one loaded partition (invariants kept)
    # (a loaded partition whose range holds rows in the source now: one may hold none)
    for table, lo, hi in pair.query("target", "SELECT table_name, p.lo, p.hi FROM so_luigi.loaded l JOIN "
                                              "so_luigi.partitions p USING (run_id, table_name, partition) "
                                              "WHERE table_name <> 'tally' ORDER BY 1, 2"):
        within = f"id > {lo if lo is not None else -1}" + (f" AND id <= {hi}" if hi is not None else "")
        top = pair.query("source", f"SELECT max(id) FROM {table} WHERE {within}")[0][0]
        if top is not None and (table != "accounts" or pair.query("source", f"SELECT count(*) FROM accounts "
                                                                             f"WHERE id = {top} - 1")[0][0]):
            break
    assert top is not None
    pair.query("source", f"UPDATE accounts SET balance = balance + CASE id WHEN {top} THEN 7 ELSE -7 END "
                         f"WHERE id IN ({top}, {top - 1})" if table == "accounts" else
                         f"UPDATE events SET note = 'changed' WHERE id = {top}")
    rerun = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    new, said = snapshot_of(pair)
    assert new != snapshot and said.startswith(f"consistent: the source as of snapshot {new}"), said
    assert f"snapshot {snapshot}, lost, are proven at it" in said
    proven, recopied = recovered(rerun.stdout)
    assert proven + recopied == before and recopied > 0, rerun.stdout
    assert invariants(pair, "target") == invariants(pair, "source") == (ACCOUNTS * BALANCE, ACCOUNTS, 0)
    for table in ("accounts", "events", "tally"):      # equal to the source, which no longer moves
        assert pair.query("target", f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t") == \
            pair.query("source", f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t")
    stale = pair.query("target", "SELECT count(*) FROM so_luigi.loaded l JOIN so_luigi.runs r USING (run_id) "
                                 "WHERE l.snapshot <> r.source_snapshot")
    assert stale == [(0,)]


def test_a_resume_without_its_snapshot_with_not_consistent_takes_what_was_read(bank):
    pair = bank
    run_until_paused(pair, "complete-commit")
    snapshot, _ = snapshot_of(pair)
    kill_holder(pair)
    resumed = subprocess.run(luigi_cmd("--not-consistent"), cwd=ROOT, env=pair.env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    new, said = snapshot_of(pair)
    assert new != snapshot and said.startswith("not consistent")
    assert "source: not consistent" in resumed.stdout and recovered(resumed.stdout) is None


def terminate_so_luigi_sessions(pair):
    """Every session so_luigi has on the source (the holder's, every reader's), as an
    administrator or a failover would end them; the writer's session is not so_luigi's."""
    return len(pair.query("source", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                    "datname = current_database() AND application_name LIKE 'so_luigi%%'"))


def test_a_snapshot_lost_while_tables_wait_to_be_planned_is_proven_not_taken_as_final(bank):
    """Tiny tables planned as they are copied (load.unplanned) have no marker until their group
    commits. A snapshot lost inside a run when every *planned* table is complete is then not a
    finished run's: the waiting tables will be read at the new snapshot, so what was read at the
    lost one must be proven at it, not relabelled as read there."""
    from so_luigi import load, recover
    pair = bank
    first = pair.run("--workers", "2", "--chunk-rows", "1000", "--tables", "accounts")
    assert first.returncode == 0, first.stderr[-3000:]
    lost, _ = snapshot_of(pair)
    kill_holder(pair)
    load.unplanned[("default", "tally")] = (None, 0, 1)     # as ReplicateAll.unplanned_small leaves it
    try:
        new = recover.renew("default", lost)
    finally:
        load.unplanned.pop(("default", "tally"))
    recorded, said = snapshot_of(pair)
    assert new == recorded != lost
    assert f"snapshot {lost}, lost, are proven at it" in said, said
    assert pair.query("target", "SELECT DISTINCT snapshot FROM so_luigi.loaded") == [(lost,)]   # not adopted


def loaded_count(pair):
    try:
        return pair.query("target", "SELECT count(*) FROM so_luigi.loaded")[0][0]
    except psycopg2.Error:          # the marker tables are not made yet
        return 0


@pytest.mark.parametrize("mode", ["streaming", "bulk"])
def test_every_source_session_terminated_again_and_again_then_the_rerun_is_exact(bank, tmp_path, mode):
    """While others write to the source, every so_luigi session on it is terminated three times
    as the run loads: the run goes on at new snapshots or stops in one line; the rerun, nobody
    deciding anything, exits 0, consistent as of its last snapshot (every invariant holds),
    every partition read or proven at it, none loaded twice. In bulk mode files extracted at an
    earlier snapshot are extracted again or the partition proven, never loaded stale."""
    pair = bank
    cfg = tmp_path / "r.cfg"
    cfg.write_text("[retries]\ntransient = 3\ndelay_seconds = 0.5\n[bulk]\nkeep_files = true\n")
    env = pair.env(LUIGI_CONFIG_PATH=str(cfg))
    writer = Writer(pair.source_url)
    try:
        said = open(tmp_path / "first.log", "w+")      # not a pipe: a full one would stall the run
        proc = subprocess.Popen(luigi_cmd("--mode", mode), cwd=ROOT, env=env, stdout=said, stderr=subprocess.STDOUT,
                                text=True)
        kills, seen = 0, 0
        deadline = time.monotonic() + 300
        while kills < 3 and proc.poll() is None and time.monotonic() < deadline:
            now = loaded_count(pair)
            if now >= seen + 4:                 # a few partitions loaded since the last time
                kills += terminate_so_luigi_sessions(pair) > 0
                seen = now
            time.sleep(0.05)
        proc.wait(timeout=600)
        said.seek(0)
        first_err = said.read()
        assert kills >= 2, f"the run ended before its sessions were terminated twice: {first_err[-2000:]}"
        if proc.returncode != 0:
            assert any(l.startswith("so_luigi: error:") for l in first_err.splitlines()), first_err[-3000:]
        rerun = subprocess.run(luigi_cmd("--mode", mode), cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=600)
    finally:
        commits = writer.finish()
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert commits > 100
    snapshot, said = snapshot_of(pair)
    assert said.startswith(f"consistent: the source as of snapshot {snapshot}"), said
    assert invariants(pair, "target") == (ACCOUNTS * BALANCE, ACCOUNTS, 0)
    assert pair.query("target", "SELECT count(*) FROM so_luigi.loaded l JOIN so_luigi.runs r USING (run_id) "
                                "WHERE l.snapshot <> r.source_snapshot") == [(0,)]
    assert pair.query("target", "SELECT count(*) FROM so_luigi.loaded") == \
        pair.query("target", "SELECT count(*) FROM so_luigi.partitions")
    if mode == "bulk":
        import json
        import os
        for folder, _, files in os.walk(pair.bulk_dir):
            for name in files:
                if name.endswith(".json"):
                    with open(os.path.join(folder, name)) as fh:
                        manifest = json.load(fh)
                    proven = pair.query("target", "SELECT proven FROM so_luigi.loaded WHERE table_name = %s "
                                                  "AND partition = %s", (manifest["table"], manifest["partition"]))
                    assert manifest["snapshot"] == snapshot or proven[0][0] is not None, (manifest, proven)
