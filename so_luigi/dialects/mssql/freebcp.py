"""A partition from PostgreSQL into SQL Server through FreeTDS's ``freebcp`` (its bulk copy in C,
Debian's and Homebrew's freetds-bin): about a third of the client CPU a row that pymssql's
``bulk_copy`` costs, which binds every value from Python (docs/performance.md).

* PostgreSQL prints the rows: COPY text of a SELECT whose expressions give each value in a form
  FreeTDS converts exactly (``plan``: booleans as 0/1, bytes as hex, instants in UTC);
* ``to_bcp`` turns that text into freebcp's character format by bytes operations over whole
  blocks (fields ended by U+001F, rows by U+001E, NULL an empty field, '' a single NUL byte, as
  freebcp reads them), and freebcp reads it from a pipe;
* rows holding a value FreeTDS would convert wrongly (the blind spots bulk.py lists: text ending
  in blanks, years before 1753, empty bytes, subnormal floats, NULL into a column with a
  DEFAULT) are picked by PostgreSQL (``plan``'s predicate) and go the pymssql way, in the
  partition's transaction; so does a whole partition where a value holds U+001E or U+001F, or
  where freebcp fails (said in the log, with freebcp's words).

freebcp commits on a connection of its own, batch by batch, so its rows commit before the
partition's marker. Only load_partition lets a write do that (``Slice.apart``): it counts
attempts, and a retry deletes the partition's key range first, so a range is never loaded twice,
and nothing is marked loaded before freebcp said it copied every row sent. A table cut by heap
position (no key range to delete), a sync's recopy and a table copied at once (verified inside
the load's transaction) stay with pymssql; so do URLs with TLS or instance options freebcp is
not given (``usable``).
"""
import codecs
import io
import logging
import os
import re
import shutil
import subprocess
import threading

from ..base import type_name
from ..postgres.connection import ident as pg_ident
from ..postgres.forms import pg_form

log = logging.getLogger("luigi-interface.so_luigi")

FIELD, ROW = b"\x1f", b"\x1e"
# what PostgreSQL prints instead of '' (freebcp reads an empty field as NULL, a lone NUL as '')
EMPTY_TEXT = "\x1d"
TRANSLATE = bytes.maketrans(b"\n" + EMPTY_TEXT.encode(), ROW + b"\x00")
COPY_OPTIONS = "FORMAT text, DELIMITER E'\\x1f', NULL ''"
# partitions this big or bigger go through freebcp with writer=auto (its start and login cost
# about 0.05 s; pymssql's bulk copy costs 10 us a row more)
MIN_ROWS = 20_000
BATCH_ROWS = 100_000
BLOCK_BYTES = 1 << 20
MIN_NORMAL = {"float8": "2.2250738585072014e-308", "float4": "1.17549435e-38"}
class Unsafe(Exception):
    """A row did not come out as freebcp's fields (no value should hold U+001D to U+001F: ``plan``
    sends those rows apart): the partition goes the pymssql way."""


class Failed(Exception):
    """freebcp failed or copied fewer rows than it was sent: its words."""


def found():
    return shutil.which("freebcp")


def usable(endpoint):
    """Why freebcp cannot write to ``endpoint`` (a URL option it is not given), or None."""
    opts = endpoint.url.options
    if not endpoint.url.user:
        return "the URL names no user for freebcp's login"
    if opts is None:
        return None
    if opts.check_certificate or opts.encrypt not in ("", "request") or opts.instance or opts.tds_version:
        return "the URL's TLS, instance or TDS version options are not passed to freebcp"
    return None


def _between(expr, lo, hi):
    return f"NOT ({expr} BETWEEN '{lo}' AND '{hi}')"


def plan(table, columns):
    """(select expressions, predicate of the rows FreeTDS would convert wrongly or None) for the
    loaded columns of a PostgreSQL ``table`` into SQL Server (``columns``: bulk.bulk_columns),
    or a string saying why freebcp cannot carry the table."""
    loaded = table.loaded_columns
    if len(loaded) < len(table.columns):
        return "the destination computes columns"
    exprs, bad = [], []
    for col, (final, _, carry) in zip(loaded, columns):
        form, inner = pg_form(col, table)
        if form is not None:
            return f"{col.name} travels as {form}"
        name, t, base = pg_ident(col.name), type_name(inner.data_type), final.split("(")[0]
        if inner is not col:
            name = f"{name}::{inner.source_type}"
        expr = name
        if t in ("int2", "int4", "int8") and base in ("smallint", "int", "bigint"):
            pass
        elif t == "bool" and base == "bit":
            expr = f"{name}::int"
        elif t == "numeric" and base in ("decimal", "numeric") and int(final.split("(")[1].split(",")[0].rstrip(")")) <= 28:
            bad.append(f"{name} = 'NaN'")
        elif t in MIN_NORMAL and base in ("float", "real"):
            bad.append(f"{name} IN ('NaN', 'Infinity', '-Infinity') OR ({name} <> 0 AND abs({name}) < {MIN_NORMAL[t]})")
        elif t in ("text", "varchar", "bpchar", "json", "jsonb") and base in ("nvarchar", "nchar"):
            text = f"{name}::text" if t in ("json", "jsonb") else name
            expr = f"CASE WHEN {text} = '' THEN E'\\x1d' ELSE {text} END"
            # freebcp trims blanks at the end (nchar pads them back: only blanks alone are lost);
            # U+001D to U+001F are what the rows travel by
            bad.append((f"right({text}, 1) = ' '" if base == "nvarchar" else f"{text} <> '' AND btrim({text}, ' ') = ''")
                       + f" OR {text} ~ E'[\\x1d-\\x1f]'")
        elif t == "uuid" and base == "uniqueidentifier":
            pass
        elif t == "date" and base == "date":
            bad.append(_between(name, "1753-01-01", "9999-12-31"))
        elif t == "timestamp" and base == "datetime2":
            bad.append(_between(name, "1753-01-01", "9999-12-31 23:59:59.999999"))
        elif t == "timestamptz" and base == "datetimeoffset":
            expr = f"({name} AT TIME ZONE 'UTC')"
            bad.append(_between(expr, "1753-01-01", "9999-12-31 23:59:59.999999"))
        elif t == "bytea" and base in ("varbinary", "binary"):
            expr = f"encode({name}, 'hex')"
            bad.append(f"octet_length({name}) = 0")
        else:
            return f"{col.name} ({inner.data_type} into {final})"
        if col.default and not col.identity:       # the bulk copy would put the default for a NULL
            bad.append(f"{name} IS NULL")
        exprs.append(expr)
    return exprs, (" OR ".join(f"({b})" for b in bad) if bad else None)


def to_bcp(lines, columns, rows=None):
    """Whole lines of the COPY text ``plan``'s SELECT prints (``COPY_OPTIONS``: U+001F between
    fields, a newline after each row, NULL an empty field, '' as U+001D) in freebcp's character
    format: U+001E after each row and a lone NUL for '' (one translate), COPY's escapes undone
    (its escapes are Python's: one C pass). Unsafe if a row does not come out with its fields."""
    rows = lines.count(b"\n") if rows is None else rows
    x = lines.translate(TRANSLATE)
    if b"\\" in x:
        x = codecs.escape_decode(x)[0]
    if x.count(FIELD) != rows * (columns - 1):
        raise Unsafe()
    return x


class Converter(io.RawIOBase):
    """Whole lines of COPY text, turned into freebcp's format into ``out`` (a binary file) block
    by block; counts rows and bytes. psycopg2 writes a row at a time: ``sink`` gathers them in C
    (io.BufferedWriter) and hands over blocks of BLOCK_BYTES."""

    def __init__(self, out, columns, progress=None):
        super().__init__()
        self.out, self.columns, self.progress = out, columns, progress
        self.rest = b""
        self.rows = self.bytes = 0

    def writable(self):
        return True

    def write(self, data):
        block = self.rest + data if self.rest else bytes(data)
        cut = block.rfind(b"\n") + 1
        self.rest = block[cut:]
        if cut:
            self._convert(block[:cut] if cut < len(block) else block)
        return len(data)

    def _convert(self, lines):
        rows = lines.count(b"\n")
        x = to_bcp(lines, self.columns, rows)
        self.out.write(x)
        self.rows += rows
        self.bytes += len(lines) - rows
        if self.progress is not None:
            self.progress.update(self.rows)

    def finish(self):
        if self.rest:
            self._convert(self.rest)
            self.rest = b""


def command(endpoint, qualified_name, identity, data):
    """freebcp's arguments: the rows from the file ``data`` (a pipe), the password from stdin,
    never on its command line (where ``ps`` would show it)."""
    url = endpoint.url
    return ["freebcp", qualified_name, "in", data, "-S", f"{url.host}:{url.port or 1433}",
            "-D", url.database or "master", "-U", url.user, "-P", "-", "-c", "-t", FIELD.decode(),
            "-r", ROW.decode(), "-b", str(BATCH_ROWS), "-m", "1", "-h", "TABLOCK"] + (["-E"] if identity else [])


COPIED = re.compile(rb"(\d+) rows copied")
NOISE = ("Starting copy", "Msg 0,", "Server '", "Changed database context", "Changed language setting")


def run(endpoint, qualified_name, identity, columns, read, progress=None):
    """freebcp ``in`` of what ``read(sink)`` writes as COPY text into the sink; returns (rows,
    bytes). Unsafe when a value holds a terminator, Failed with freebcp's words when it fails or
    copies fewer rows than it was sent (the rows of its committed batches stay: the caller
    clears the range)."""
    data_r, data_w = os.pipe()
    env = dict(os.environ, LC_ALL="C.UTF-8")        # its client charset: UTF-8
    try:
        proc = subprocess.Popen(command(endpoint, qualified_name, identity, f"/dev/fd/{data_r}"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, pass_fds=(data_r,))
    finally:
        os.close(data_r)
    said = []
    reader = threading.Thread(target=lambda: said.append(proc.stdout.read()), daemon=True)
    reader.start()
    out = os.fdopen(data_w, "wb", buffering=0)
    converter = Converter(out, columns, progress)
    broken = False
    try:
        proc.stdin.write((endpoint.url.password or "").encode() + b"\n")
        proc.stdin.close()
        buffered = io.BufferedWriter(converter, BLOCK_BYTES)
        read(buffered)
        buffered.flush()
        converter.finish()
    except BrokenPipeError:
        broken = True                   # freebcp stopped reading: its words say why
    except BaseException:
        proc.kill()
        raise
    finally:
        try:
            out.close()
        except BrokenPipeError:
            broken = True
        code = proc.wait()
        reader.join()
    text = said[0] if said else b""
    copied = COPIED.search(text)
    if broken or code != 0 or copied is None or int(copied.group(1)) != converter.rows:
        words = " ".join(line.strip() for line in text.decode("utf-8", "replace").splitlines()
                         if line.strip() and not line.strip().startswith(NOISE))
        raise Failed(f"freebcp was sent {converter.rows} rows and copied "
                     f"{copied.group(1).decode() if copied else 'none'} (exit {code}): {words[-500:]}")
    return converter.rows, converter.bytes
