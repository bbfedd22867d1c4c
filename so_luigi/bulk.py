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
import time
from dataclasses import dataclass
from urllib.parse import quote

import luigi
import psycopg2

from . import encode, faults, markers, stream
from .config import bulk_settings, source_endpoint, target_endpoint
from .dialects import mssql, postgres as pg
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


def _open(path, mode, **how):
    """Every bulk file, local or on an object store, goes through smart_open."""
    import smart_open
    return smart_open.open(path, mode, **how)


def _compression(path):
    """gzip by the final name's extension (level 1: the files are read once, soon), else none."""
    if path.endswith(".gz"):
        return {"compression": ".gz", "compression_kwargs": {"compresslevel": 1}}
    return {"compression": "disable"}


class BulkTarget(luigi.Target):
    """A partition's manifest file: local path or smart_open URI."""

    def __init__(self, path):
        self.path = path

    def exists(self):
        if "://" not in self.path:
            return os.path.exists(self.path)
        try:
            with _open(self.path, "rb"):
                return True
        except Exception:  # noqa: BLE001 -- smart_open raises per-scheme errors for "not there"
            return False


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
            with _open(tmp, "wb", buffering=1 << 20, **_compression(path)) as fh:
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
    with _open(path, "wb", **_compression(path)) as fh:
        return fill(fh)


def _discard(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def file_format(settings, source_ep, table):
    """binary when asked for and the rows can travel in PostgreSQL's binary COPY format (a
    PostgreSQL source whose column types the destination keeps), else csv."""
    if settings.format == "binary" and stream.source_format(source_ep, table) == "binary":
        return "binary"
    return "csv"


def extract_partition(run_id, table_name, partition, checksum=True):
    """Write one partition's rows as a file, then its manifest. Returns the manifest."""
    source_ep, settings = source_endpoint(), bulk_settings()
    with pg.session(target_endpoint()) as conn:
        table, _ = markers.planned_table(conn, run_id, table_name)
        lo, hi, _ = markers.partition_range(conn, run_id, table_name, partition)
    fmt = file_format(settings, source_ep, table)
    files = files_for(run_id, table_name, partition, settings, fmt)
    started = time.monotonic()

    def fill(fh):
        counter = _Counting(fh)
        if source_ep.url.dialect == "postgres":
            # a local file takes psycopg2's one write per row in C; its position is the size
            local = "://" not in files.data
            src = pg.connect(source_ep)
            try:
                src.set_session(readonly=True)
                with src.cursor() as cur:
                    cur.copy_expert(pg.copy_out_sql(table, lo, hi, fmt, cur), fh if local else counter,
                                    size=256 * 1024)
                    return cur.rowcount, None, fh.tell() if local else counter.bytes, 0
            finally:
                src.close()
        rows, total, changed = _mssql_csv(source_ep, table, lo, hi, counter, checksum)
        return rows, total, counter.bytes, changed

    def fill_then_pause(fh):
        result = fill(fh)
        faults.pause("extract-write")       # written, not yet under its final name
        return result
    rows, total, nbytes, changed = write_atomically(files.data, settings, fill_then_pause)
    manifest = {"table": table_name, "partition": partition, "rows": rows, "bytes": nbytes, "changed": changed,
                "checksum": None if total is None else str(total), "file": os.path.basename(files.data),
                "format": fmt,
                "seconds": round(time.monotonic() - started, 3)}
    write_atomically(files.manifest, settings, lambda fh: fh.write(json.dumps(manifest).encode()))
    return manifest


class _Counting:
    """A write() target that counts the bytes it passes on."""

    def __init__(self, fh):
        self.fh = fh
        self.bytes = 0

    def write(self, data):
        self.bytes += len(data)
        return self.fh.write(data)


def _mssql_csv(endpoint, table, lo, hi, sink, checksum):
    """SQL Server rows to CSV; the checksum comes from the same rows' COPY text lines."""
    to_csv = stream.row_encoder(table, csv=True)
    to_text = stream.row_encoder(table) if checksum else None
    conn = mssql.connect(endpoint)
    rows, total = 0, 0
    try:
        cur = conn.cursor()
        query, params = mssql.select_sql(table, lo, hi)
        cur.execute(query, params)
        for batch in iter(lambda: cur.fetchmany(5000), []):
            try:
                lines = encode.encode_lines(to_csv(batch))
                if to_text is not None:
                    total += encode.lines_checksum(encode.encode_lines(to_text(batch)))
            except UnicodeEncodeError:
                raise stream._bad_unicode(table, batch, to_csv(batch)) from None
            lines.append(b"")
            sink.write(b"\n".join(lines))
            rows += len(batch)
    finally:
        conn.close()
    return rows, (total if checksum else None), sum(to_csv.changed.values())


def read_manifest(files):
    try:
        with _open(files.manifest, "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError) as exc:
        raise DataError(f"bulk manifest {files.manifest} is unreadable ({one_line(exc)}): "
                        "delete it to extract the partition again") from None


def load_file(cur, schema, into, files, prepare, freeze, buffer_bytes, fmt="csv"):
    """COPY one extracted file (``fmt``, as its manifest says) into ``into``; ``prepare()``
    (re)creates or truncates it first.

    Server-side when it can, inside a savepoint so a refusal costs nothing; else streamed.
    Returns (rows stored, via, what to tell the user the first time).
    """
    if files.local and not files.compressed:
        cur.execute("SAVEPOINT so_luigi_bulk")
        try:
            prepare()
            literal = cur.mogrify("%s", (files.server,)).decode()
            cur.execute(pg.copy_in_sql(schema, into, fmt, freeze, source=literal))
            stored = cur.rowcount
            cur.execute("RELEASE SAVEPOINT so_luigi_bulk")
            return stored, "server-file", f"the server reads the files itself (COPY FROM '{files.server}')"
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT so_luigi_bulk")
            why = one_line(exc.pgerror or exc)
    else:
        why = "gzip files" if files.compressed else "the files are not on a local path"
    prepare()
    with _open(files.data, "rb") as fh:
        cur.copy_expert(pg.copy_in_sql(schema, into, fmt, freeze), fh, size=stream.chunk_size(buffer_bytes))
    return cur.rowcount, "client-file", f"the client streams the files through COPY FROM STDIN ({why})"


def remove_files(run_id, table):
    """Delete a completed table's files: a local folder, or every object under its s3:// prefix;
    other object stores keep them (the log says where)."""
    settings = bulk_settings()
    if settings.keep_files:
        return
    where = table_dir(settings, run_id, table)
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
