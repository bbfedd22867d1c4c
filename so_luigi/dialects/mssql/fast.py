"""Rows of a SQL Server source read as Arrow record batches through Microsoft's mssql-python
(``pip install so_luigi[fast-mssql]``), written as CSV by pyarrow, or made COPY text column at a
time where the lines are hashed as they are read (``encode_arrow``); and
a SQL Server destination's rows read back the same way for full verification from PostgreSQL,
their checksum's text (``checksum.canonical_encoders``) made column at a time too.

Reading a row through pymssql costs the client 4 to 5 us and making its COPY text in Python 2 to
12 more; mssql-python's ``arrow_batch`` reads it in under 1 and pyarrow's kernels make its text in
well under 1 (docs/performance.md). The lines, and so the checksum, are byte for byte those of the
row path, which stays the path when the driver is not installed, cannot honour the URL's options
(a CA file of the user's own: ODBC checks a certificate against itself, not a CA; a TDS version),
or cannot connect; the URL's ``driver=`` option chooses either.

Only rows go this way (a partition's, or a destination's read back): the catalog, planning,
markers and the checksums the server computes stay on pymssql (``connection``).
"""
import gc
import logging
import os
import re

from ...errors import ConnectError, DataError, SoLuigiError, TransientError
from . import catalog

log = logging.getLogger("luigi-interface.so_luigi")

_UNUSABLE = {}      # (url, pid) -> why the rows go through pymssql instead
_ENCRYPT = {}       # (url, pid) -> the Encrypt value that connected ("yes" or "no")


def missing():
    """Why mssql-python's Arrow path cannot load here (None when it can)."""
    try:
        import mssql_python  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or exc} is not installed (pip install so_luigi[fast-mssql])"
    except OSError as exc:          # its ODBC driver's libraries (Debian: libltdl7)
        return f"mssql-python cannot load its driver ({exc}); on Debian: apt install libltdl7"
    return None


def why_not(url, role="source"):
    """Why this URL's rows go through pymssql (None: through mssql-python's Arrow batches)."""
    opts = url.options
    driver = getattr(opts, "driver", "") or "auto"
    if driver == "pymssql":
        return "the URL says driver=pymssql"
    key = (url.raw, os.getpid())
    if key in _UNUSABLE:
        return _UNUSABLE[key]
    reason = missing()
    if reason is None and opts is not None and opts.ca_file and not opts.system_cas:
        reason = "its ODBC driver checks a certificate against itself, not against a ca_file's CAs"
    if reason is None and opts is not None and opts.tds_version:
        reason = "its ODBC driver chooses the TDS version itself (the URL sets tds_version)"
    if reason and driver == "mssql-python":
        raise ConnectError(f"{role} {url.redacted}: driver=mssql-python, but {reason}")
    return reason


def preload(url):
    """Where the Source is first made (Luigi's main process, while it schedules): a URL asking
    for driver=mssql-python where it cannot run fails here, before any task, and the Arrow
    path's modules are loaded before the task processes are forked."""
    if why_not(url) is None:
        import pyarrow.compute  # noqa: F401
        from ... import encode_arrow
        encode_arrow.pgpq_missing()     # imports pgpq where it is installed
        gc.freeze()                     # as so_luigi's own import does


_SAID = set()      # (url, pid) whose choice of driver this process has logged
_ROW_PATH = set()  # (url, table, pid): a table whose text mssql-python may have changed (Replaced)


class Replaced(TransientError):
    """A batch held U+FFFD (BatchEncoder.replacement), which is what mssql-python's Arrow fetch
    makes of an unpaired UTF-16 surrogate (simdutf's convert_utf16le_to_utf8_with_replacement),
    where pymssql returns the surrogate and the row path refuses it naming the key; both sides
    would hash the same replaced line, so the checksum cannot see it. The partition is read again
    through pymssql, which tells a real U+FFFD (copied as it is) from a surrogate (refused)."""


def open_for(endpoint, isolation, table=None):
    """An mssql-python connection for a partition's rows, reading at ``isolation()``, or None:
    the rows then go through pymssql, and the first time in this process the log says why."""
    url = endpoint.url
    reason = why_not(url, endpoint.role)
    if reason is None and table is not None and (url.raw, table.qualified, os.getpid()) in _ROW_PATH:
        return None
    if reason is None:
        return connect(endpoint, isolation())
    key = (url.raw, os.getpid())
    if key not in _SAID:
        _SAID.add(key)
        log.info("%s %s: rows read through pymssql: %s", endpoint.role, url.redacted, reason)
    return None


def _odbc(value):
    """A connection-string value in braces when it needs them (``}`` doubled inside)."""
    return "{" + value.replace("}", "}}") + "}" if re.search(r"[;{}=\s]", value) or not value else value


def connection_string(url, encrypt):
    opts = url.options
    server = f"{url.host},{url.port or 1433}" if url.port or not (opts and opts.instance) \
        else f"{url.host}\\{opts.instance}"
    parts = {"Server": server, "Database": url.database, "UID": url.user, "PWD": url.password,
             "Encrypt": encrypt}
    checked = bool(opts and opts.check_certificate)
    parts["TrustServerCertificate"] = "no" if checked else "yes"
    if checked and opts.certificate_hostname:
        parts["HostnameInCertificate"] = opts.certificate_hostname
    if opts and opts.read_only:
        parts["ApplicationIntent"] = "ReadOnly"
    return ";".join(f"{k}={_odbc(str(v))}" for k, v in parts.items() if v is not None)


def _encrypt_choices(opts):
    """Encrypt values to try, in order: what pymssql's FreeTDS does with the same option
    (``request``, the default, encrypts where the server can)."""
    asked = opts.encrypt if opts else ""
    if asked == "require" or (opts and opts.check_certificate):
        return ["yes"]
    if asked == "off":
        return ["no"]
    return ["yes", "no"]


def connect(endpoint, isolation):
    """An mssql-python connection reading at ``isolation`` (MssqlSource's), or None (with the
    reason kept for this process) when it cannot log in where pymssql did."""
    import mssql_python
    url = endpoint.url
    key = (url.raw, os.getpid())
    opts = url.options
    timeout = opts.login_timeout if opts else 15
    errors = []
    for encrypt in ([_ENCRYPT[key]] if key in _ENCRYPT else _encrypt_choices(opts)):
        try:
            conn = mssql_python.connect(connection_string(url, encrypt), autocommit=True, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 -- any failure: the row path connects instead
            said = _message(exc)
            errors.append(said.replace(url.password, "***") if url.password else said)
            continue
        if key not in _ENCRYPT:
            log.info("%s %s: rows read through mssql-python's Arrow batches (Encrypt=%s)", endpoint.role,
                     url.redacted, encrypt)
        _ENCRYPT[key] = encrypt
        try:
            if opts and opts.query_timeout:
                conn.timeout = opts.query_timeout
            if isolation == "SNAPSHOT":
                conn.cursor().execute("SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
        except Exception as exc:  # noqa: BLE001 -- closed, then said in one line
            conn.close()
            raise ConnectError(f"{endpoint.role} {url.redacted}: mssql-python: {_message(exc)}") from None
        return conn
    _UNUSABLE[key] = f"mssql-python could not connect ({errors[-1]})"
    if (opts.driver if opts else "") == "mssql-python":
        raise ConnectError(f"{endpoint.role} {url.redacted}: driver=mssql-python could not connect: {errors[-1]}")
    _SAID.add(key)
    log.warning("%s %s: rows read through pymssql: %s", endpoint.role, url.redacted, _UNUSABLE[key])
    return None


def _message(exc):
    text = " ".join(str(exc).split())
    return re.sub(r"(\[[^\]]*\])+", "", text).strip(" :") or type(exc).__name__


def translate(exc, table, role="source"):
    """An mssql-python error while reading, as a one-line SoLuigiError."""
    msg = _message(exc)
    if re.search(r"communication link|connection|TCP Provider|timeout expired|08S01|HYT00", str(exc), re.I):
        return TransientError(f"{role} SQL Server (mssql-python): connection lost or timed out reading "
                              f"{table.qualified}: {msg}")
    return SoLuigiError(f"{role} SQL Server (mssql-python) reading {table.qualified}: {msg}")


def _qmark(sql, params):
    """pymssql's %s placeholders (with %% for a literal %) as ODBC's ?."""
    if params is None:
        return sql, ()
    return re.sub(r"%%|%s", lambda m: "%" if m.group() == "%%" else "?", sql), tuple(params)


def reader(conn, table, lo, hi, checksum, buffer_bytes, encoder, endpoint):
    """``read(sink)`` for stream.stream: the range's batches as COPY text into ``sink``, sized to
    about a chunk each; returns (rows, checksum or None, values changed). A batch holding U+FFFD
    stops it (``Replaced``): the task's retry reads the partition through pymssql."""
    from ...stream import chunk_size

    target = chunk_size(buffer_bytes)

    def read(sink):
        sql, params = _qmark(*catalog.select_sql(table, lo, hi))
        rows, total, size = 0, 0, 1000
        try:
            cur = conn.cursor()
            cur.execute(sql, *params) if params else cur.execute(sql)
            while True:
                batch = cur.arrow_batch(size)
                if batch.num_rows == 0:
                    break
                data, n, part = encoder(batch, checksum)
                if encoder.replacement:
                    _ROW_PATH.add((endpoint.url.raw, table.qualified, os.getpid()))
                    raise Replaced(f"{table.qualified}: text read through mssql-python holds U+FFFD, which it "
                                   "also makes of an unpaired UTF-16 surrogate; reading the partition again "
                                   "through pymssql")
                sink.write(data, n)
                rows += n
                total += part or 0
                if len(data):
                    size = max(100, min(100_000, int(size * target / len(data))))
            end = encoder.finish()
            if end:
                sink.write(end, 0)
        except (SoLuigiError, DataError):
            raise
        except Exception as exc:  # noqa: BLE001 -- the driver's, made one line
            if type(exc).__module__.split(".")[0] not in ("mssql_python", "pyarrow"):
                raise
            raise translate(exc, table) from None
        finally:
            conn.close()
        return rows, (total if checksum else None), sum(encoder.changed.values())
    return read


# --- reading a destination back -----------------------------------------------------------------

def _canonical_text(arr, col, uuid=False):
    """checksum._canonical of each value as pymssql returns it, made from the Arrow column
    mssql-python returns: str() of the value, decimals normalized, times without a zero
    fraction, instants in UTC with +00:00, uuids (``uuid``: a uniqueidentifier column, whatever
    domain it came from) in lower case. None where only the value
    itself tells (floats, bytes, anything else): then value by value."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from ...encode_arrow import TEXT, decimal_text

    def no_zero_fraction(text):             # str(datetime) prints a fraction only when it has one
        return pc.if_else(pc.ends_with(text, ".000000"), pc.utf8_slice_codeunits(text, 0, -7), text)

    kind = arr.type
    if pa.types.is_boolean(kind):
        return pc.if_else(arr, pa.scalar("t", TEXT), pa.scalar("f", TEXT))
    if pa.types.is_integer(kind) or pa.types.is_date32(kind):
        return pc.cast(arr, TEXT)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.cast(arr, TEXT)
        return pc.utf8_lower(text) if uuid else text
    if pa.types.is_decimal(kind):
        if kind.precision > 28:             # _canonical's normalize() rounds to 28 digits
            return None
        text = decimal_text(arr)
        if text is None:
            return None
        return pc.ascii_rtrim(pc.ascii_rtrim(text, "0"), ".") if kind.scale > 0 else text
    if pa.types.is_timestamp(kind) and kind.tz in (None, "+00:00", "UTC"):
        text = no_zero_fraction(pc.cast(pc.cast(arr, pa.timestamp("us")), TEXT))
        if kind.tz is None:
            return text
        return pc.binary_join_element_wise(text, pa.scalar("+00:00", TEXT), pa.scalar("", TEXT))
    if pa.types.is_time(kind):
        return no_zero_fraction(pc.cast(pc.cast(arr, pa.time64("us"), safe=False), TEXT))
    return None


def canonical_checksum(batch, table):
    """checksum.rows_checksum of a record batch whose columns are the table's, in its order."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from ...encode_arrow import TEXT, _by_value, lines_checksum
    from .checksum import _canonical, canonical_encoders, held_types
    held = held_types(table)
    texts = []
    for i, (col, encoder) in enumerate(zip(table.columns, canonical_encoders(table))):
        arr = batch.column(i)
        uuid = held[col.name] == "uniqueidentifier" or col.data_type in ("uuid", "uniqueidentifier")
        text = _canonical_text(arr, col, uuid) if encoder is _canonical else None
        texts.append(pc.fill_null(_by_value(arr, encoder) if text is None else text, pa.scalar("\\N", TEXT)))
    lines = pc.binary_join_element_wise(*texts, pa.scalar("\x1f", TEXT)) if len(texts) > 1 else texts[0]
    return lines_checksum(lines, newline=0)


def read_back(endpoint, sql, params, table):
    """(rows, checksum.rows_checksum) of what ``sql`` selects (the table's columns, in its order),
    read as Arrow batches; None when mssql-python cannot read this destination (pymssql then does)."""
    if why_not(endpoint.url, endpoint.role) is not None:
        return None
    conn = connect(endpoint, "READ COMMITTED")
    if conn is None:
        return None
    sql, params = _qmark(sql, params)
    count = total = 0
    try:
        cur = conn.cursor()
        cur.execute(sql, *params) if params else cur.execute(sql)
        while True:
            batch = cur.arrow_batch(20000)
            if batch.num_rows == 0:
                break
            count += batch.num_rows
            total += canonical_checksum(batch, table)
    except Exception as exc:  # noqa: BLE001 -- the driver's, made one line
        if type(exc).__module__.split(".")[0] not in ("mssql_python", "pyarrow"):
            raise
        raise translate(exc, table, endpoint.role) from None
    finally:
        conn.close()
    return count, total
