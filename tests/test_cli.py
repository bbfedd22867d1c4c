"""The so-luigi command: the demo (the README's front door), report, reset and a fresh copy,
and secrets kept out of everything a run leaves behind."""
import subprocess
import sys

from so_luigi.testing import sample
from conftest import ROOT, assert_same_tables


def so_luigi(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "so_luigi", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_demo_runs_the_whole_pipeline_on_embedded_pgserver():
    out = so_luigi("demo", "--scale", "0.001")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "demo succeeded: every table verified" in out.stdout
    assert out.stdout.count("ok: count+checksum") == 9


def test_report_reset_and_fresh_copy(pair):
    sample.fill(pair.source(), scale=0.001, names=["Users", "Votes"], log=lambda *a: None)
    assert pair.run("--chunk-rows", "2000").returncode == 0
    report = so_luigi("report", env=pair.env())
    assert report.returncode == 0 and "Votes" in report.stdout and "ok: count+checksum" in report.stdout
    first = pair.query("target", "SELECT table_name, partition, loaded_at FROM so_luigi.loaded ORDER BY 1, 2")

    # a reset forgets the markers: the same command copies again, replacing the tables; Users was
    # read at the finished run's snapshot, since let go: it is proven at the new one, not copied again
    wait_for_no_holder(pair)                # the replicated run's snapshot is let go
    reset = so_luigi("reset", "--tables", "Votes", env=pair.env())
    assert reset.returncode == 0, reset.stderr
    again = pair.run("--chunk-rows", "2000")
    users = len([r for r in first if r[0] == "Users"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"recovered from a lost source snapshot: {users} partition(s) proven equal to the source at the new " \
           "one, 0 recopied" in again.stdout, again.stdout
    second = pair.query("target", "SELECT table_name, partition, loaded_at FROM so_luigi.loaded ORDER BY 1, 2")
    assert [r for r in second if r[0] == "Users"] == [r for r in first if r[0] == "Users"]
    assert all(s[2] > f[2] for f, s in zip(first, second) if f[0] == "Votes")
    assert_same_tables(pair, ["Users", "Votes"])

    # a run id continues only the copy it began: another source is refused, clearly
    other = pair.run(env=pair.env(SO_SOURCE_SCHEMA="elsewhere"))
    assert other.returncode != 0 and "run_id 'default' was started copying" in other.stderr


def test_no_password_anywhere(pair):
    sample.fill(pair.source(), scale=0.001, names=["Users"], log=lambda *a: None)
    pair.query("target", "CREATE ROLE so_pw LOGIN PASSWORD 'Sup3r-Secret' SUPERUSER")
    try:
        host = pair.cluster.host
        target = f"postgresql://so_pw:Sup3r-Secret@{host}:{pair.cluster.port}/{pair.target_url.rsplit('/', 1)[1]}"
        env = pair.env(SO_TARGET_URL=target)
        out = pair.run(env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        report = so_luigi("report", env=env)
        everything = out.stdout + out.stderr + report.stdout + report.stderr
        assert "Sup3r-Secret" not in everything and "so_pw:***@" in everything
        dumped = pair.query("target", "SELECT string_agg(t::text, '') FROM (SELECT * FROM so_luigi.runs) t")[0][0]
        dumped += pair.query("target", "SELECT string_agg(t::text, '') FROM (SELECT * FROM so_luigi.tables) t")[0][0]
        assert "Sup3r-Secret" not in dumped
    finally:
        pair.query("target", "DROP OWNED BY so_pw; DROP ROLE so_pw")


def test_types_command_prints_the_table():
    out = so_luigi("types")
    assert out.returncode == 0 and "| datetime | timestamp(3) |" in out.stdout


def test_a_dry_pass_writes_nothing_and_a_run_after_it_plans(pair):
    """luigi-deps-tree walks requires() as a run's scheduling does: it shows the partitions the
    source would give, and leaves the destination as it was (not even the marker schema)."""
    sample.fill(pair.source(), scale=0.002, names=["Users", "Votes"], log=lambda *a: None)
    tree = subprocess.run(["luigi-deps-tree", "--module", "so_luigi", "ReplicateAll", "--chunk-rows", "2000"],
                          cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=300)
    assert tree.returncode == 0, tree.stderr[-3000:]
    votes = pair.query("source", 'SELECT count(*) FROM "Votes"')[0][0]
    shown = votes_partitions(tree.stdout)
    assert votes > 4000 and shown == -(-votes // 2000), tree.stdout[-3000:]
    assert pair.query("target", "SELECT count(*) FROM pg_namespace WHERE nspname = 'so_luigi'") == [(0,)]
    assert pair.query("target", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    assert pair.run("--chunk-rows", "2000").returncode == 0
    assert_same_tables(pair, ["Users", "Votes"])
    # once planned, a dry pass shows the stored plan, and still writes nothing
    planned = pair.query("target", "SELECT count(*), max(planned_at) FROM so_luigi.tables")
    tree = subprocess.run(["luigi-deps-tree", "--module", "so_luigi", "ReplicateAll", "--chunk-rows", "500"],
                          cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=300)
    assert tree.returncode == 0 and votes_partitions(tree.stdout) == shown
    assert pair.query("target", "SELECT count(*), max(planned_at) FROM so_luigi.tables") == planned


def votes_partitions(tree):
    """Votes' partitions in luigi-deps-tree's output: [LoadPartition-{..., 'table': 'Votes', 'partition': '3'} ..."""
    import re
    return len(set(re.findall(r"LoadPartition-\{[^}]*'table': 'Votes', 'partition': '(\d+)'", tree)))


def wait_for_no_holder(pair, seconds=30):
    import time
    deadline = time.monotonic() + seconds
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'so_luigi snapshot holder' "
           "AND datname = current_database()")
    while pair.query("source", sql) != [(0,)]:
        assert time.monotonic() < deadline, "the snapshot holder never let go"
        time.sleep(0.2)
