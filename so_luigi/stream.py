"""Streaming a partition: a reader thread fills a bounded byte pipe, the COPY FROM STDIN drains it.

The pipe holds at most ``limit`` bytes, so a worker's memory is bounded by ``buffer_mb`` plus two
chunks in flight plus the drivers' own fixed buffers, whatever the table size. Reading overlaps
writing: psycopg2 and pymssql release the GIL while they wait on the network.

Readers are the sources' (``Source.copy_reader``):
* PostgreSQL: ``COPY (SELECT ... range) TO STDOUT`` (binary when the destination types are the
  source's own, else text) writes into an OS pipe that the COPY FROM STDIN reads, both ends
  in C (psycopg2 calls ``write`` once per row, and a Python ``write`` cost 1.4 us a row, as much
  CPU as a server backend spends on it). The kernel's pipe (1 MB) is the bound; progress comes
  from the destination's pg_stat_progress_copy;
* SQL Server: ``fetchmany`` batches (or mssql-python's Arrow batches), sized to the chunk,
  through ``encode.make_row_encoder`` (``copy_rows`` here) or ``encode_arrow``: CSV where both
  servers compute the checksum, else COPY text whose lines are hashed on the way.
"""
import fcntl
import os
import tempfile
import threading
from collections import deque

from . import encode
from .errors import DataError


class PipeAborted(Exception):
    """The consumer gave up (its COPY failed): the producer stops reading."""


class BoundedPipe:
    """Byte chunks from one producer thread to one consumer, at most ``limit`` bytes queued."""

    def __init__(self, limit):
        self.limit = max(1, int(limit))
        self._chunks = deque()
        self._queued = 0
        self._cv = threading.Condition()
        self._closed = False
        self._aborted = False
        self.error = None
        self.total_bytes = 0
        self.peak_bytes = 0

    def put(self, data):
        with self._cv:
            # a chunk larger than the limit still passes, alone, so progress never stalls
            while self._queued and self._queued + len(data) > self.limit and not self._aborted:
                self._cv.wait()
            if self._aborted:
                raise PipeAborted()
            self._chunks.append(data)
            self._queued += len(data)
            self.total_bytes += len(data)
            self.peak_bytes = max(self.peak_bytes, self._queued)
            self._cv.notify_all()

    def close(self, error=None):
        with self._cv:
            self._closed = True
            self.error = error
            self._cv.notify_all()

    def abort(self):
        with self._cv:
            self._aborted = True
            self._chunks.clear()
            self._queued = 0
            self._cv.notify_all()

    def read(self, size=-1):
        """File-like read for psycopg2's copy_expert: the next chunk, b'' at the end."""
        with self._cv:
            while not self._chunks and not self._closed:
                self._cv.wait()
            if self._chunks:
                data = self._chunks.popleft()
                self._queued -= len(data)
                self._cv.notify_all()
                return data
            if self.error is not None:
                raise self.error
            return b""


class ChunkWriter:
    """File-like write() target that groups small writes (one per row for COPY TO) into chunks,
    counting rows for the progress report on the way."""

    def __init__(self, pipe, chunk_bytes, progress=None):
        self.pipe = pipe
        self.chunk_bytes = chunk_bytes
        self.progress = progress
        self.rows = 0
        self._buf = bytearray()

    def write(self, data, rows=1):
        self.rows += rows
        if not self._buf and len(data) >= self.chunk_bytes // 2:
            self._put(bytes(data))      # a batch sized to a chunk: copied once, not gathered (a tenth of the CPU)
            return
        self._buf += data
        if len(self._buf) >= self.chunk_bytes:
            self.flush()

    def flush(self):
        if self._buf:
            self._put(bytes(self._buf))
            self._buf.clear()

    def _put(self, data):
        self.pipe.put(data)
        if self.progress is not None:
            self.progress.update(self.rows)


PIPE_BYTES = 1 << 20


def _os_pipe():
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)      # Linux: fewer, larger hand-overs
    except (AttributeError, OSError):
        pass
    return open(r, "rb", buffering=PIPE_BYTES), open(w, "wb", buffering=PIPE_BYTES)


class _Counted:
    """The pipe's read end for copy_expert, counting bytes (one Python call per chunk read)."""

    def __init__(self, raw):
        self.raw = raw
        self.bytes = 0

    def read(self, size=-1):
        data = self.raw.read(size)
        self.bytes += len(data)
        return data


def os_pipe_stream(read, write):
    """``read(file)`` in a thread writing into an OS pipe, ``write(file)`` here reading it.

    A reader failure closes the pipe, so the COPY FROM may end cleanly, short: the reader's
    error is raised after it, and the caller's transaction never commits those rows. A writer
    failure closes the read end, so the reader's next write fails and it stops.
    """
    rfile, wfile = _os_pipe()
    result = {}

    def produce():
        try:
            result["read"] = read(wfile)
        except BaseException as exc:  # noqa: BLE001 -- raised in the caller's thread
            result["error"] = exc
        finally:
            try:
                wfile.close()
            except OSError:
                pass                       # the reading side is gone already
    producer = threading.Thread(target=produce, name="so_luigi-reader", daemon=True)
    producer.start()
    counted = _Counted(rfile)
    try:
        written = write(counted)
    except BaseException:
        rfile.close()
        producer.join()
        error = result.get("error")
        if error is not None and not isinstance(error, BrokenPipeError):
            raise error from None
        raise
    finally:
        if not rfile.closed:
            rfile.close()
    producer.join()
    if "error" in result:
        raise result["error"]
    return result["read"], written, counted.bytes


def spooled(read, write, buffer_bytes):
    """``read(file)`` into a spool (memory up to ``buffer_bytes``, a temporary file beyond),
    then ``write(file)`` from it, both in this thread: for a tiny table, whose rows cost less
    than the thread and the pipe of ``stream``. Returns what ``stream`` returns."""
    with tempfile.SpooledTemporaryFile(max_size=buffer_bytes) as spool:
        result = read(spool)
        moved = spool.tell()
        spool.seek(0)
        return result, write(spool), moved


def chunk_size(buffer_bytes):
    return max(64 * 1024, min(4 * 1024 * 1024, buffer_bytes // 4))


def stream(read, write, buffer_bytes, progress=None):
    """Run ``read(sink)`` in a thread while ``write(pipe)`` drains the pipe here.

    Returns (read's result, write's result, bytes moved). A reader failure is raised as itself
    (not as the COPY error it provokes); a writer failure stops the reader. A reader that writes
    in C (``read.os_pipe``) gets an OS pipe instead (``os_pipe_stream``).
    """
    if getattr(read, "os_pipe", False):
        return os_pipe_stream(read, write)
    pipe = BoundedPipe(buffer_bytes)
    result = {}

    def produce():
        try:
            sink = ChunkWriter(pipe, chunk_size(buffer_bytes), progress)
            result["read"] = read(sink)
            sink.flush()
            pipe.close()
        except BaseException as exc:  # noqa: BLE001 -- handed to the consumer thread
            pipe.close(exc)

    producer = threading.Thread(target=produce, name="so_luigi-reader", daemon=True)
    producer.start()
    try:
        written = write(pipe)
    except BaseException:
        pipe.abort()
        producer.join()
        if pipe.error is not None and not isinstance(pipe.error, PipeAborted):
            raise pipe.error from None
        raise
    producer.join()
    if pipe.error is not None:
        raise pipe.error
    return result.get("read"), written, pipe.total_bytes


# --- rows into COPY data -----------------------------------------------------------------------

def binary_compatible(table):
    """Binary COPY needs the destination types to be exactly the source's, and none the source
    defines: their binary form carries type oids (composites, arrays) that differ per server."""
    return all(c.pg_type == c.source_type and not c.user_type for c in table.columns)


def row_encoder(table, csv=False):
    """The row path's encoder with the configured U+0000 policy ([data] in luigi.cfg)."""
    from .config import section
    settings = section("data")
    return encode.make_row_encoder(table, csv, settings.nul, settings.nul_replacement)


def batch_encoder(table, csv=False, type_names=None):
    """The Arrow path's encoder (``encode_arrow``, imported here: pyarrow is an extra) with the
    configured U+0000 policy: COPY text lines, or (``csv``) data with no line hashed: PostgreSQL's
    binary COPY where pgpq is installed and the destination's base types (``type_names``, one a
    column) allow, else CSV; the destination tells them apart by the first bytes (``binary_copy``)."""
    from .config import section
    from .encode_arrow import BatchEncoder, BinaryBatchEncoder, CsvBatchEncoder, pgpq_missing
    settings = section("data")
    if csv and type_names is not None and not pgpq_missing():
        return BinaryBatchEncoder(table, type_names, settings.nul, settings.nul_replacement)
    return (CsvBatchEncoder if csv else BatchEncoder)(table, settings.nul, settings.nul_replacement)


# the first bytes of PostgreSQL's binary COPY data, which no CSV or COPY text starts with (0xFF
# is never UTF-8)
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


class _Replayed:
    """A file's reads with ``head`` (bytes already read from it) first."""

    def __init__(self, head, rest):
        self.head, self.rest = head, rest

    def read(self, size=-1):
        if self.head:
            out, self.head = self.head, b""
            return out
        return self.rest.read(size)


def binary_copy(pipe, fmt):
    """(format, file) of data whose reader may send binary COPY in place of ``fmt``
    (``read.may_send_binary``): its first bytes say which; the file gives them again."""
    head = b""
    while len(head) < len(BINARY_SIGNATURE):
        more = pipe.read(len(BINARY_SIGNATURE) - len(head))    # a BoundedPipe gives a whole chunk
        if not more:
            break
        head += more
    return ("binary" if head.startswith(BINARY_SIGNATURE) else fmt), _Replayed(head, pipe)


def copy_rows(batches, encoder, sink, checksum, table, batch=None, target_batch_bytes=4 << 20):
    """Encode row batches into ``sink``; returns (rows, checksum or None, values changed).

    ``batch`` (a one-element list) is resized so a batch encodes to about target_batch_bytes:
    wide Posts rows and narrow Votes rows both keep memory flat. The checksum covers every
    column read; the lines written leave out those the destination generates (their values,
    read from the source, are compared with what the destination computed).
    """
    rows, total = 0, 0
    keep = table.loaded_positions
    for chunk in batches:
        lines = encoder(chunk)
        try:
            blines = encode.encode_lines(lines)
        except UnicodeEncodeError:
            raise bad_unicode(table, chunk, lines) from None
        if checksum:
            total += encode.lines_checksum(blines)
        if len(keep) < len(table.columns):     # text format: a tab inside a value is escaped
            blines = [b"\t".join(fields[i] for i in keep) for fields in (line.split(b"\t") for line in blines)]
        blines.append(b"")
        data = b"\n".join(blines)
        sink.write(data, len(chunk))
        rows += len(chunk)
        if batch is not None and data:
            batch[0] = max(100, min(100_000, int(batch[0] * target_batch_bytes / len(data))))
    return rows, (total if checksum else None), sum(getattr(encoder, "changed", {}).values())


def bad_unicode(table, rows, lines):
    key = table.primary_key[0] if table.primary_key else None
    k = [c.name for c in table.columns].index(key) if key else None
    for row, line in zip(rows, lines):
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as exc:
            where = f"{key}={row[k]}" if key else "a row"
            return DataError(f"{table.qualified} {where}: text holds an unpaired UTF-16 surrogate "
                             f"({exc.object[exc.start:exc.end]!r}), which is not valid Unicode")
    return DataError(f"{table.qualified}: text is not valid Unicode")


def batched(iterable, size):
    """Lists of up to ``size`` items."""
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
