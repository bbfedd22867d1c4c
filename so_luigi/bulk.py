"""Bulk mode: each partition as a CSV file under ``[bulk] dir``, loaded by the server itself.

Files: ``<dir>/<run_id>/<table>/<partition>.csv[.gz]`` plus ``<partition>.json``, the manifest
(rows, bytes, checksum, format) written after the data. With ``[bulk] format = binary`` a
PostgreSQL source's partitions are ``.pgcopy[.gz]`` files in PostgreSQL's binary COPY format
instead (less CPU than CSV on both servers), when the destination keeps their column types.
The manifest is the extract's Luigi target: a partition whose manifest exists is extracted,
whatever else lies in the folder. Local files are written under a temporary name and renamed
when complete; on object stores (s3:// and the other smart_open schemes) an object only appears
when its upload completes. Both go through smart_open (gzip at level 1 when ``compress``), and a
completed table's files are removed from either (on S3 by prefix).

Loading prefers the server reading the file (``COPY ... FROM '<server_dir>/...'``), which needs
the file visible to the server (``[bulk] server_dir`` when it is mounted elsewhere) and the
pg_read_server_files privilege; otherwise, and for gzip or remote files, the client streams the
same file through ``COPY ... FROM STDIN``. Each process logs once which way it went.
"""
import errno
import json
import logging
import os
import shutil
from dataclasses import dataclass
from urllib.parse import quote


from .config import bulk_settings
from .errors import ConfigError, DataError, one_line

log = logging.getLogger("luigi-interface.so_luigi")  # shown wherever Luigi shows its own log


@dataclass(frozen=True)
class PartitionFiles:
    data: str        # where the client writes and reads it
    manifest: str
    server: str      # where the destination server would read the data file
    local: bool
    compressed: bool


def _safe(name):
    return quote(name, safe="")


def table_dir(settings, run_id, table):
    return f"{settings.dir.rstrip('/')}/{_safe(run_id)}/{_safe(table)}"


def files_for(run_id, table, partition, settings=None, fmt="csv"):
    """Paths of a partition's files; ``fmt`` (csv or binary) names the data file's extension."""
    settings = settings or bulk_settings()
    rel = f"{_safe(run_id)}/{_safe(table)}/{partition:06d}"
    ext = (".pgcopy" if fmt == "binary" else ".csv") + (".gz" if settings.compress else "")
    return PartitionFiles(data=f"{settings.dir.rstrip('/')}/{rel}{ext}",
                          manifest=f"{settings.dir.rstrip('/')}/{rel}.json",
                          server=f"{settings.server_dir.rstrip('/')}/{rel}{ext}",
                          local=settings.is_local, compressed=settings.compress)


def open_file(path, mode, **how):
    """Every bulk file, local or on an object store, goes through smart_open."""
    import smart_open
    return smart_open.open(path, mode, **how)


def _compression(path):
    """gzip by the final name's extension (level 1: the files are read once, soon), else none."""
    if path.endswith(".gz"):
        return {"compression": ".gz", "compression_kwargs": {"compresslevel": 1}}
    return {"compression": "disable"}


def manifest_matches(path, planned):
    """Whether the manifest at ``path`` (local path or smart_open URI) exists and was written for
    the partition as planned now: ``planned()`` gives (plan id, lo, hi, snapshot), None when the
    table is not planned."""
    if "://" not in path and not os.path.exists(path):
        return False
    try:
        with open_file(path, "rb") as fh:
            manifest = json.loads(fh.read())
    except Exception:  # noqa: BLE001 -- smart_open raises per-scheme errors for "not there"
        return False
    return cut_for(manifest, planned())


def cut_for(manifest, planned):
    """Whether a manifest was written for the partition ``planned`` = (plan id, lo, hi, source
    snapshot): a file read at a snapshot the run no longer reads at is extracted again."""
    return planned is not None and [manifest.get(k) for k in ("plan", "lo", "hi", "snapshot")] == list(planned)


def _bulk_error(settings, path, exc):
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ConfigError(f"bulk dir {settings.dir} is full while writing {path}: free space or set "
                           "[bulk] dir / SO_BULK_DIR elsewhere")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)
    return ConfigError(f"bulk dir {settings.dir}: cannot write {path} ({reason}): fix its permissions "
                       "or set [bulk] dir / SO_BULK_DIR elsewhere")


def write_atomically(path, settings, fill):
    """Call ``fill(fh)`` on a binary file that appears under ``path`` only once complete."""
    if "://" not in path:
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # compression by the final name: the temporary one hides its .gz extension
            with open_file(tmp, "wb", buffering=1 << 20, **_compression(path)) as fh:
                result = fill(fh)
            os.chmod(tmp, 0o644)          # the server's own user must be able to read it
            os.replace(tmp, path)
            return result
        except OSError as exc:
            _discard(tmp)
            raise _bulk_error(settings, path, exc) from None
        except BaseException:
            _discard(tmp)
            raise
    with open_file(path, "wb", **_compression(path)) as fh:
        return fill(fh)


def _discard(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def file_format(settings, source, table):
    """binary when asked for and the rows can travel in PostgreSQL's binary COPY format (a
    PostgreSQL source whose column types the destination keeps), else csv."""
    if settings.format == "binary" and source.copy_format(table) == "binary":
        return "binary"
    return "csv"


class Counting:
    """A write() target that counts the bytes it passes on."""

    def __init__(self, fh):
        self.fh = fh
        self.bytes = 0

    def write(self, data):
        self.bytes += len(data)
        return self.fh.write(data)


def write_manifest(files, settings, manifest):
    write_atomically(files.manifest, settings, lambda fh: fh.write(json.dumps(manifest).encode()))


def read_manifest(files):
    try:
        with open_file(files.manifest, "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError) as exc:
        raise DataError(f"bulk manifest {files.manifest} is unreadable ({one_line(exc)}): "
                        "delete it to extract the partition again") from None


def remove_files(run_id, table=None, keep=None):
    """Delete a table's files (every table's of the run when ``table`` is None): a local folder,
    or every object under its s3:// prefix; other object stores keep them (the log says where).
    A completed table's stay when ``[bulk] keep_files`` (``keep``)."""
    settings = bulk_settings()
    if settings.keep_files if keep is None else keep:
        return
    where = table_dir(settings, run_id, table) if table else f"{settings.dir.rstrip('/')}/{_safe(run_id)}"
    if settings.is_local:
        shutil.rmtree(where, ignore_errors=True)
    elif where.startswith("s3://"):
        _remove_s3_prefix(where + "/")
    else:
        log.info("bulk files of %s stay at %s (remove them there)", table, where)


def _remove_s3_prefix(uri):
    """Delete every object under an s3://bucket/prefix/ (boto3, as smart_open's s3 uses it: the
    same credentials and endpoint settings, e.g. AWS_ENDPOINT_URL_S3)."""
    import boto3
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    client = boto3.client("s3")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
