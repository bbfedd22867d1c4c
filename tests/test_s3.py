"""Bulk mode with [bulk] dir on S3: moto's S3 server on a free loopback port stands in for S3.
Partition files go up through smart_open, are loaded through the client (the server cannot read
S3), the copy is exact, and a completed table's objects are removed."""
import os
import shutil
import subprocess
import time

import pytest

from so_luigi.testing import sample
from so_luigi.testing.embedded import free_port
from conftest import assert_same_tables

boto3 = pytest.importorskip("boto3", reason="S3 bulk files need the s3 extra: pip install -e '.[s3]'")


@pytest.fixture
def s3(tmp_path):
    """(environment for boto3 and smart_open, a client) against a moto S3 server of our own."""
    server = shutil.which("moto_server")
    if server is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3")
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="so-bulk")
                break
            except Exception:  # noqa: BLE001 -- not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield env, client
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=10)


def objects(client, prefix=""):
    return [o["Key"] for o in client.list_objects_v2(Bucket="so-bulk", Prefix=prefix).get("Contents", [])]


def test_bulk_files_on_s3_load_exactly_and_are_removed_when_complete(pair, s3):
    env, client = s3
    tables = ["Users", "Votes"]
    sample.fill(pair.source(), scale=0.002, names=tables, log=lambda *a: None)
    result = pair.run("--mode", "bulk", "--chunk-rows", "8000", "--workers", "2",
                      env=pair.env(SO_BULK_DIR="s3://so-bulk/runs", **env))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok: count+checksum") == len(tables)
    assert "client streams the files through COPY FROM STDIN" in result.stderr
    assert_same_tables(pair, tables)
    partitions = pair.query("target", "SELECT count(*) FROM so_luigi.loaded")[0][0]
    assert partitions >= 3
    assert objects(client, "runs/") == []          # every file of a completed table removed


def test_kept_s3_files_stay_with_their_manifests(pair, s3):
    env, client = s3
    sample.fill(pair.source(), scale=0.002, names=["Users"], log=lambda *a: None)
    result = pair.run("--mode", "bulk", env=pair.env(SO_BULK_DIR="s3://so-bulk/kept", SO_BULK_KEEP_FILES="1", **env))
    assert result.returncode == 0, result.stderr[-3000:]
    kept = objects(client, "kept/")
    assert sorted(k.rsplit(".", 1)[1] for k in kept) == ["csv", "json"], kept
