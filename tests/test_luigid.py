"""Against a real luigid: two worker processes (as on two hosts) share one replication, and
loading tasks report their progress to the scheduler while `so-luigi status` follows along."""
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from so_luigi.testing import sample
from so_luigi.testing.embedded import free_port
from conftest import ROOT, assert_same_tables


@pytest.fixture
def luigid(tmp_path):
    port = free_port()
    # as the README starts it: `so-luigi luigid` is luigid with so_luigi's [resources] defaults
    server = subprocess.Popen([sys.executable, "-m", "so_luigi", "luigid", "--port", str(port), "--address", "127.0.0.1",
                               "--state-path", str(tmp_path / "state.pickle"), "--logdir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            api(port, "task_list", {})
            break
        except OSError:
            time.sleep(0.1)
    yield port
    server.terminate()
    server.wait(timeout=10)


def api(port, method, data):
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{method}?{query}", timeout=5) as resp:
        return json.loads(resp.read())["response"]


def replicate(pair, port, *args):
    cmd = [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll",
           "--scheduler-host", "127.0.0.1", "--scheduler-port", str(port),
           "--no-lock", *args]  # two processes on one host: without --no-lock the second exits as already running
    return subprocess.Popen(cmd, cwd=ROOT, env=pair.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_share_the_partitions_through_luigid(pair, luigid):
    tables = ["Users", "Votes", "Comments"]
    sample.fill(pair.source(), scale=0.01, names=tables, log=lambda *a: None)
    # as on two hosts: the same command twice, staying until the shared tasks are done
    first = replicate(pair, luigid, "--workers", "2", "--chunk-rows", "2500", "--worker-keep-alive")
    second = replicate(pair, luigid, "--workers", "2", "--chunk-rows", "2500", "--worker-keep-alive")
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0, outs[0][1][-3000:]
    assert second.returncode == 0, outs[1][1][-3000:]
    assert_same_tables(pair, tables)
    # each partition loaded once (the marker's primary key), and both processes loaded some
    rows = pair.query("target", "SELECT worker, count(*) FROM so_luigi.loaded GROUP BY worker")
    pids = {int(worker.rsplit(":", 1)[1]) for worker, _ in rows}
    assert pids == {first.pid, second.pid}, rows
    planned = pair.query("target", "SELECT count(*) FROM so_luigi.partitions")[0][0]
    assert sum(n for _, n in rows) == planned > 40


def test_progress_reaches_the_scheduler_and_the_status_command(pair, luigid):
    # one 300 MB partition: long enough to be watched while it loads
    pair.query("source", 'CREATE TABLE "Big" ("Id" int PRIMARY KEY, "Body" text NOT NULL); '
                         "INSERT INTO \"Big\" SELECT g, repeat(md5(g::text), 160) FROM generate_series(1, 60000) g")
    run = replicate(pair, luigid, "--workers", "1", "--chunk-rows", "1000000", "--buffer-mb", "8")
    messages, percents, statuses = set(), set(), []

    def follow_status():
        while run.poll() is None:
            statuses.append(subprocess.run([sys.executable, "-m", "so_luigi", "status"], cwd=ROOT, env=pair.env(),
                                           capture_output=True, text=True).stdout)
    import threading
    follower = threading.Thread(target=follow_status)
    follower.start()
    while run.poll() is None:
        for task in api(luigid, "task_list", {"status": "RUNNING", "upstream_status": "", "search": ""}).values():
            if task["name"] in ("LoadPartition", "CopyTables"):  # a small table goes by CopyTables
                if task.get("status_message"):
                    messages.add(task["status_message"])
                if task.get("progress_percentage") is not None:
                    percents.add(task["progress_percentage"])
        time.sleep(0.1)
    follower.join()
    out, err = run.communicate()
    assert run.returncode == 0, err[-3000:]
    assert any("Big partition 0:" in m and "of 60,000 rows" in m and "rows/s" in m for m in messages), messages
    assert any(0 < p < 100 for p in percents), percents
    assert any("rows in flight" in s for s in statuses), statuses[-3:]
    final = subprocess.run([sys.executable, "-m", "so_luigi", "status"], cwd=ROOT, env=pair.env(),
                           capture_output=True, text=True).stdout
    assert "60,000/60,000" in final and "ok: count+checksum" in final and "committed: 100.0%" in final


def test_resources_cap_the_connections_each_database_sees(pair, tmp_path):
    """--workers 4, [resources] source_connections = 1: never two source sessions at once."""
    import threading
    # wide rows in a few partitions: each source COPY lasts long enough for overlaps to be seen
    pair.query("source", 'CREATE TABLE "Wide" ("Id" int PRIMARY KEY, "Body" text NOT NULL); '
                         "INSERT INTO \"Wide\" SELECT g, repeat(md5(g::text), 100) FROM generate_series(1, 40000) g")
    cfg = tmp_path / "caps.cfg"
    peaks = {}

    def run(label, caps):
        cfg.write_text(f"[resources]\nsource_connections = {caps}\ntarget_connections = 16\n")
        pair.query("target", "DROP SCHEMA IF EXISTS so_luigi CASCADE; DROP TABLE IF EXISTS \"Wide\"")
        peak, stop = [0], threading.Event()

        def watch():
            while not stop.is_set():
                n = pair.query("source", "SELECT count(*) FROM pg_stat_activity "
                                         "WHERE application_name = 'so_luigi source' AND datname = current_database() "
                                         "AND state = 'active' AND backend_type = 'client backend'")  # not parallel workers
                peak[0] = max(peak[0], n[0][0])
                time.sleep(0.01)
        watcher = threading.Thread(target=watch)
        watcher.start()
        out = pair.run("--workers", "4", "--chunk-rows", "10000", env=pair.env(LUIGI_CONFIG_PATH=str(cfg)))
        stop.set()
        watcher.join()
        assert out.returncode == 0, out.stderr[-3000:]
        peaks[label] = peak[0]
    run("capped", 1)
    run("open", 16)
    assert peaks["capped"] == 1 and peaks["open"] > 1, peaks
    assert_same_tables(pair, ["Wide"])


def test_a_plain_luigid_is_given_the_caps_and_two_processes_share_the_work(pair, tmp_path):
    """A luigid started as Luigi users start it (no config, no so_luigi) grants 1 of a resource
    it does not know: so_luigi sets the caps it lacks at scheduling (here source_connections = 3,
    from the workers' config: more than one process's 2 workers take), both processes load
    partitions, and never more than 3 source sessions read at once across them."""
    import threading
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from luigi.cmdline import luigid; luigid()", "--port", str(port),
                               "--address", "127.0.0.1", "--state-path", str(tmp_path / "state.pickle"),
                               "--logdir", str(tmp_path)], cwd=tmp_path,            # no luigi.cfg there
                              env={k: v for k, v in pair.env().items() if k != "LUIGI_CONFIG_PATH"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                assert api(port, "resource_list", {}) == []       # plain: no resources at all
                break
            except OSError:
                time.sleep(0.1)
        pair.query("source", 'CREATE TABLE "Wide" ("Id" int PRIMARY KEY, "Body" text NOT NULL); '
                             "INSERT INTO \"Wide\" SELECT g, repeat(md5(g::text), 100) FROM generate_series(1, 60000) g")
        cfg = tmp_path / "caps.cfg"
        cfg.write_text("[resources]\nsource_connections = 3\n")
        env = pair.env(LUIGI_CONFIG_PATH=str(cfg))
        peak, stop = [0], threading.Event()

        def watch():
            while not stop.is_set():
                n = pair.query("source", "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                         "'so_luigi source' AND datname = current_database() AND state = 'active' "
                                         "AND backend_type = 'client backend'")
                peak[0] = max(peak[0], n[0][0])
                time.sleep(0.01)
        watcher = threading.Thread(target=watch)
        watcher.start()
        cmd = [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--scheduler-host", "127.0.0.1",
               "--scheduler-port", str(port), "--no-lock", "--workers", "2", "--chunk-rows", "3000",
               "--worker-keep-alive"]
        runs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outs = [p.communicate(timeout=600) for p in runs]
        stop.set()
        watcher.join()
        resources = {r["name"]: r["num_total"] for r in api(port, "resource_list", {})}
    finally:
        server.terminate()
        server.wait(timeout=10)
    for run, (_, err) in zip(runs, outs):
        assert run.returncode == 0, err[-3000:]
    assert resources == {"source_connections": 3, "target_connections": 16}, resources
    said = outs[0][1] + outs[1][1]
    assert "the scheduler had no [resources] source_connections: set to 3" in said, said[-3000:]
    rows = pair.query("target", "SELECT worker, count(*) FROM so_luigi.loaded GROUP BY worker")
    assert {int(w.rsplit(":", 1)[1]) for w, _ in rows} == {runs[0].pid, runs[1].pid}, rows
    assert peak[0] <= 3, peak                          # the cap holds across both processes
    assert_same_tables(pair, ["Wide"])
