"""PostgreSQL sessions: connecting, the settings every session pins, quoting, and driver errors
as one-line SoLuigiErrors.

Every session so_luigi opens pins the settings that change how values print (DateStyle, TimeZone,
extra_float_digits, bytea_output, IntervalStyle), so a checksum computed on the source and on
the destination formats each value the same way.
"""
import threading
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import psycopg2.errors

from ...errors import ConnectError, SchemaError, SoLuigiError, TransientError, one_line


def ident(name):
    """A PostgreSQL identifier, always quoted (so case and reserved words survive), as
    psycopg2's ``sql.Identifier`` and libpq's ``PQescapeIdentifier`` write it, without needing a
    connection to do so."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema, name):
    return f"{ident(schema)}.{ident(name)}"


def literal(text):
    """A string literal for sessions with standard_conforming_strings on (PostgreSQL's default
    since 9.1): quotes doubled, backslashes as they are. (psycopg2's QuotedString, without a
    connection, escapes backslashes as libpq last saw that setting, process-wide.)"""
    return "'" + str(text).replace("'", "''") + "'"


def percent_safe(sql):
    """SQL text (names already quoted) for a driver call that also passes parameters: psycopg2
    reads every '%' as the start of a placeholder, so a name's '%' is doubled."""
    return sql.replace("%", "%%")


SESSION_SETTINGS = ("SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; SET extra_float_digits = 1; "
                    "SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'; "
                    "SET client_encoding = 'UTF8'")



class Connection(psycopg2.extensions.connection):
    """A connection that knows which endpoint it is, so driver errors can say where they happened.
    While ``reusing`` is on, closing it keeps it (rolled back, its session defaults restored) for
    the next session on the same endpoint."""

    label = "PostgreSQL"
    kept_as = None              # its key in the pool of reusing(), when it may go back there

    def close(self):
        pool, key = _pool, self.kept_as
        if pool is not None and key is not None and not self.closed:
            try:
                self.rollback()
                self.autocommit = False
                self.set_session(isolation_level="DEFAULT", readonly="DEFAULT", deferrable="DEFAULT")
                self.autocommit = key[-1]
            except psycopg2.Error:
                pass                # broken: closed below, never handed out again
            else:
                if self.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                    with _pool_lock:
                        pool.setdefault(key, []).append(self)
                    return
        super().close()


_pool = None                    # while reusing() is on: (URL, role, autocommit) -> idle connections
_pool_lock = threading.Lock()


@contextmanager
def reusing():
    """Within, a session closed keeps its connection for the next one (a PostgreSQL backend
    costs both sides a process start, and a task copying many small tables opens several per
    table); every kept connection is closed at the end. Only connections that change no setting
    of their session beyond SESSION_SETTINGS are kept: ``keep(conn, False)`` for the others."""
    global _pool
    if _pool is not None:
        yield
        return
    _pool = {}
    try:
        yield
    finally:
        with _pool_lock:
            kept, _pool = _pool, None
        for conns in kept.values():
            for conn in conns:
                conn.close()


def keep(conn, reusable):
    """Whether ``conn`` may go back to reusing()'s pool when closed (not one whose session
    settings were changed)."""
    if not reusable:
        conn.kept_as = None



def connect(endpoint, autocommit=False):
    """Open a session on ``endpoint`` (one reusing() kept, if any); failures become one-line
    ConnectErrors naming what to fix."""
    key = (endpoint.url.raw, endpoint.role, autocommit)
    if _pool is not None:
        with _pool_lock:
            idle = _pool.get(key)
            if idle:
                return idle.pop()
    try:
        conn = psycopg2.connect(endpoint.url.raw, application_name=f"so_luigi {endpoint.role}",
                                connect_timeout=15, connection_factory=Connection)
        conn.label = f"{endpoint.role} {endpoint.url.redacted}"
    except psycopg2.OperationalError as exc:
        raise connect_error(exc, endpoint) from None
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(SESSION_SETTINGS)
    conn.autocommit = autocommit
    conn.kept_as = key
    return conn



@contextmanager
def session(endpoint, autocommit=False):
    """A connection that is rolled back on any error and always closed."""
    conn = connect(endpoint, autocommit)
    try:
        yield conn
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    finally:
        conn.close()



class Deferred:
    """A cursor that keeps the writes it is given and sends them in one round trip (``flush``),
    for statements whose results nobody reads: a group of small tables' markers (0.15 ms of
    round trip each, against microseconds of work). ``deferred``: callers that check a row
    count skip it (the caller holds the locks that make it certain)."""

    deferred = True

    def __init__(self, cur):
        self.cur = cur
        self.statements = []

    def execute(self, sql, params=None):
        self.statements.append(self.cur.mogrify(sql, params))

    def executemany(self, sql, seq):
        self.statements += [self.cur.mogrify(sql, params) for params in seq]

    def flush(self):
        if self.statements:
            self.cur.execute(b";\n".join(self.statements))
            self.statements = []


def connect_error(exc, ep):
    msg = str(exc)
    url = ep.url
    where = f"{ep.role} {url.redacted}"
    if "password authentication failed" in msg or "no password supplied" in msg:
        return ConnectError(f"{where}: wrong password or user {url.user!r} "
                            f"(set [{ep.role}] url or SO_{ep.role.upper()}_URL)")
    if "could not translate host name" in msg or "Name or service not known" in msg:
        return ConnectError(f"{where}: unknown host {url.host!r}")
    if "does not exist" in msg and "database" in msg:
        return ConnectError(f"{where}: database {url.database!r} does not exist")
    if "role" in msg and "does not exist" in msg:
        return ConnectError(f"{where}: user {url.user!r} does not exist")
    if "Connection refused" in msg or "No such file or directory" in msg or "timeout expired" in msg:
        return TransientError(f"{where}: no PostgreSQL server answers at "
                              f"{url.host or 'the default socket'}{':' + str(url.port) if url.port else ''}")
    return ConnectError(f"{where}: {one_line(msg)}")



def translate(exc, conn=None):
    """A psycopg2 error raised while working becomes a one-line SoLuigiError naming its database."""
    conn = conn or getattr(getattr(exc, "cursor", None), "connection", None)
    where = getattr(conn, "label", "PostgreSQL")
    text = one_line(getattr(exc, "pgerror", None) or exc)
    lost = conn is not None and conn.closed == 2        # 2: broken, not closed by us
    # a session killed in the middle of COPY TO leaves libpq with no message at all
    lost = lost or "no message from the libpq" in text or "server closed the connection" in text
    if lost or isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and not isinstance(
            exc, (psycopg2.errors.QueryCanceled, psycopg2.errors.DiskFull, psycopg2.errors.OutOfMemory)):
        return TransientError(f"{where}: connection lost or server unavailable: {text}")
    if isinstance(exc, psycopg2.errors.QueryCanceled):
        return SoLuigiError(f"{where}: {text} (cancelled: is statement_timeout of this role too short?)")
    if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
        return SchemaError(f"{where}: permission denied, grant the privilege or use another role: {text}")
    return SoLuigiError(f"{where}: {text}")
