"""docker-compose.yml is valid (docker-compose 1.29 checks it without an engine)."""
import shutil
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose not installed (scripts/test.sh installs Debian's)")
def test_compose_file_is_valid_with_the_example_env():
    out = subprocess.run(["docker-compose", "--env-file", ".env.example", "config", "-q"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_refuses_to_start_without_passwords(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    out = subprocess.run(["docker-compose", "--env-file", str(empty), "config", "-q"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "MSSQL_SA_PASSWORD" in out.stderr
