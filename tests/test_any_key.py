"""Tables without a single integer key, from PostgreSQL: a uuid key, a composite key and no key at
all (duplicate rows kept) are cut into parallel partitions by heap block (ctid) ranges, read at
the run's snapshot; killed mid-run and resumed, they come out exact, nothing loaded twice."""
import subprocess
import sys

import pytest

from conftest import ROOT, kill_group, paused_at

TABLES = ["ByUuid", "ByPair", "NoKey"]


def luigi_cmd(*args):
    return [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
            "--workers", "2", "--chunk-rows", "4000", *args]


@pytest.fixture
def keyed(pair):
    if int(pair.query("source", "SHOW server_version_num")[0][0]) < 140000:
        pytest.skip("ctid ranges need PostgreSQL 14's TID range scans")
    pair.query("source", """
        CREATE TABLE "ByUuid" (id uuid PRIMARY KEY, n int NOT NULL, note text);
        INSERT INTO "ByUuid" SELECT md5(g::text)::uuid, g, repeat(chr(65 + g % 26), g % 90) FROM generate_series(1, 20000) g;
        CREATE TABLE "ByPair" (a int, b text, v numeric, PRIMARY KEY (a, b));
        INSERT INTO "ByPair" SELECT g % 100, 'k' || g, g / 7.0 FROM generate_series(1, 20000) g;
        CREATE TABLE "NoKey" (x int, y text);
        INSERT INTO "NoKey" SELECT g % 50, 'same' FROM generate_series(1, 20000) g;   -- many duplicate rows
        ANALYZE""")
    return pair


def fingerprint(pair, which, table):
    """Every row, duplicates counted, whatever the order."""
    return pair.query(which, f'SELECT count(*), md5(string_agg(t::text, \',\' ORDER BY t::text)) FROM "{table}" t')[0]


def assert_exact(pair):
    for table in TABLES:
        assert fingerprint(pair, "target", table) == fingerprint(pair, "source", table), table


def test_tables_without_an_integer_key_are_cut_by_ctid_and_copied_exactly(keyed):
    pair = keyed
    out = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert_exact(pair)
    parts = dict(pair.query("target", "SELECT table_name, partitions FROM so_luigi.tables"))
    assert all(parts[t] >= 4 for t in TABLES), parts
    cuts = dict(pair.query("target", "SELECT table_name, definition->>'cut' FROM so_luigi.tables"))
    assert cuts == {t: "ctid" for t in TABLES}
    assert pair.query("target", "SELECT count(*) FROM pg_indexes WHERE tablename = 'ByPair' "
                                "AND indexdef LIKE '%(a, b)%'") == [(1,)]          # the key is rebuilt


def test_killed_mid_run_and_resumed_exact(keyed):
    pair = keyed
    proc = paused_at(luigi_cmd(), pair.env(), "load-commit")
    before = pair.query("target", "SELECT table_name, partition, loaded_at FROM so_luigi.loaded")
    kill_group(proc)
    rerun = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_exact(pair)
    after = {(t, p): at for t, p, at in pair.query("target", "SELECT table_name, partition, loaded_at FROM so_luigi.loaded")}
    assert all(after[(t, p)] == at for t, p, at in before)                  # nothing loaded twice
    assert len(after) == pair.query("target", "SELECT count(*) FROM so_luigi.partitions")[0][0]
