"""so_luigi's Luigi settings travel with the package: run from a directory without any luigi.cfg,
a failed run still exits non-zero and the connection caps hold; a user's luigi.cfg still wins."""
import subprocess
import sys

import pytest

from so_luigi.testing import sample
from so_luigi.luigi_config import LUIGI_DEFAULTS
from conftest import assert_same_tables
from test_errors import with_url


def run_in(directory, pair, *args, **env):
    cmd = [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler", *args]
    return subprocess.run(cmd, cwd=directory, env=pair.env(**env), capture_output=True, text=True, timeout=600)


@pytest.fixture
def elsewhere(tmp_path):
    """A working directory with no luigi.cfg in it (and LUIGI_CONFIG_PATH unset by pair.env)."""
    assert not (tmp_path / "luigi.cfg").exists()
    return tmp_path


def test_a_failed_run_exits_non_zero_from_any_directory(pair, elsewhere):
    missing = with_url(pair.target_url, database="no_such_target")
    result = run_in(elsewhere, pair, SO_TARGET_URL=missing)
    assert result.returncode == LUIGI_DEFAULTS["retcode"]["scheduling_error"], result.stderr[-2000:]
    assert "database 'no_such_target' does not exist" in result.stderr


def test_a_good_run_exits_zero_from_any_directory(pair, elsewhere):
    sample.fill(pair.source(), scale=0.001, names=["Users", "Badges"], log=lambda *a: None)
    result = run_in(elsewhere, pair, "--chunk-rows", "2000")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok: count+checksum") == 2
    assert_same_tables(pair, ["Users", "Badges"])


def test_a_users_luigi_cfg_overrides_each_key(pair, elsewhere):
    (elsewhere / "luigi.cfg").write_text("[retcode]\nscheduling_error = 77\n[resources]\nsource_connections = 3\n")
    missing = with_url(pair.target_url, database="no_such_target")
    assert run_in(elsewhere, pair, SO_TARGET_URL=missing).returncode == 77
    probe = ("import so_luigi, luigi.configuration as c; cfg = c.get_config(); "
             "print(cfg.getintdict('resources'), cfg.getint('retcode', 'task_failed'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=pair.env(), capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "{'source_connections': 3, 'target_connections': 16} 30"


def test_the_scheduler_caps_connections_without_a_luigi_cfg(pair, elsewhere):
    """The local scheduler (and `so-luigi luigid`) reads [resources] after so_luigi set it."""
    probe = ("import so_luigi, luigi.scheduler as s; "
             "print(sorted(s.Scheduler()._resources.items()))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=pair.env(), capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[('source_connections', 8), ('target_connections', 16)]"
