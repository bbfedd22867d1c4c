"""docker-compose.yml is valid and complete (docker-compose 1.29 checks it without an engine),
and holds no password of its own."""
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

needs_compose = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                   reason="docker-compose not installed (scripts/test.sh installs Debian's)")


def compose(*args, env_file=".env.example"):
    return subprocess.run(["docker-compose", "--env-file", env_file, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@needs_compose
def test_compose_file_is_valid_with_the_example_env():
    out = compose("config", "-q")
    assert out.returncode == 0, out.stderr
    services = set(compose("config", "--services").stdout.split())
    assert services == {"mssql-files", "sqlserver", "mssql-attach", "postgres", "luigid", "worker"}


@needs_compose
def test_every_long_running_service_has_a_healthcheck_and_the_worker_waits_for_them():
    text = compose("config").stdout
    for service in ("sqlserver", "postgres", "luigid"):
        block = re.search(rf"\n  {service}:\n(.*?)(?=\n  \S|\Z)", text, re.S).group(1)
        assert "healthcheck:" in block, service
    worker = re.search(r"\n  worker:\n(.*?)(?=\n  \S|\Z)", text, re.S).group(1)
    for dep in ("mssql-attach", "postgres", "luigid"):
        assert dep in worker
    assert "--scheduler-host" in worker and "luigid" in worker


@needs_compose
def test_compose_refuses_to_start_without_passwords(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    out = compose("config", "-q", env_file=str(empty))
    assert out.returncode != 0 and "MSSQL_SA_PASSWORD" in out.stderr


def test_no_password_is_written_in_the_stack():
    with open(f"{ROOT}/docker-compose.yml") as fh:
        settings = re.findall(r"^\s*(\w*PASSWORD\w*)\s*:\s*(.*)$", fh.read(), re.M)
    assert settings and all(value.startswith("${") for _, value in settings), settings


def test_attach_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", f"{ROOT}/scripts/mssql-attach.sh"]).returncode == 0
