"""SQL Server sessions (2016+, Azure SQL, Babelfish) through pymssql: connecting, quoting, and
driver errors as one-line SoLuigiErrors."""
import re
from contextlib import contextmanager

from ...errors import ConnectError, SchemaError, SoLuigiError, TransientError
from ... import mssql_options as options


def ident(name):
    """A bracketed T-SQL identifier, as QUOTENAME writes it."""
    return "[" + name.replace("]", "]]") + "]"


def qualified(schema, name):
    return f"{ident(schema)}.{ident(name)}"


def literal(text):
    """An N'...' string literal."""
    return "N'" + text.replace("'", "''") + "'"


def percent_safe(sql):
    """SQL text (names already quoted) for a pymssql call that also passes parameters: every '%'
    is read as the start of a placeholder, so a name's '%' is doubled."""
    return sql.replace("%", "%%")


def connect(endpoint, autocommit=True):
    import pymssql
    url = endpoint.url
    args = options.connect_args(url, url.options or options.Options())
    try:
        conn = pymssql.connect(**args, appname=f"so_luigi {endpoint.role}", charset="UTF-8",
                               autocommit=autocommit)
    except (pymssql.OperationalError, pymssql.InterfaceError) as exc:
        raise connect_error(exc, endpoint) from None
    return conn



@contextmanager
def session(endpoint):
    """A transaction (pymssql begins one itself when autocommit is off): rolled back on any
    error, always closed."""
    conn = connect(endpoint, autocommit=False)
    try:
        yield conn
    except BaseException:
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 -- a lost connection has nothing to roll back
            pass
        raise
    finally:
        conn.close()



def _message(exc):
    """The server's words, one line: without the bytes repr, DB-Lib's 'error message N, severity
    S' headers and its 'General SQL Server error: Check messages from the SQL Server' filler."""
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], tuple):         # pymssql: OperationalError((number, message))
        args = args[0]
    detail = args[1] if len(args) > 1 and isinstance(args[0], int) else str(exc)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    detail = re.sub(r"DB-Lib error message \d+, severity \d+:?", "\n", str(detail))
    lines = []
    for line in detail.splitlines():
        line = re.sub(r"General SQL Server error: Check messages from the SQL Server\.?", "", line).strip(" ;")
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines) or str(exc)



def _connects(url, opts):
    """Whether a connection with ``opts`` instead gets through (only to explain a failure)."""
    import pymssql
    try:
        pymssql.connect(**options.connect_args(url, opts), appname="so_luigi diagnosis").close()
    except Exception:  # noqa: BLE001 -- any failure means "no"
        return False
    return True


def _tls_error(where, url, opts):
    """Why a TLS login failed, found by trying again with less checked: the CA, the name, or a
    server that does not do TLS at all."""
    import dataclasses
    name = opts.certificate_hostname or url.host
    if _connects(url, dataclasses.replace(opts, check_hostname=False)):
        return ConnectError(f"{where}: the server's certificate does not name {name!r}: set "
                            "certificate_hostname=<a name it carries> in the URL, or connect by that name")
    if _connects(url, dataclasses.replace(opts, check_certificate=False, encrypt="require")):
        return ConnectError(f"{where}: the server's certificate is not signed by a CA in "
                            f"{opts.ca_file}: set ca_file=<the CA that signed it> in the URL "
                            "(or trust_server_certificate=yes to encrypt unchecked)")
    if opts.encrypt == "require" and _connects(url, dataclasses.replace(
            opts, check_certificate=False, encrypt="")):
        return ConnectError(f"{where}: the server does not do TLS, and the URL says encrypt=require")
    return None


def connect_error(exc, ep):
    import socket
    msg = re.sub(r"Changed (language setting|database context) to '[^']*'\.?;? ?", "", _message(exc))
    url = ep.url
    opts = url.options or options.Options()
    where = f"{ep.role} {url.redacted}"
    if "connection failed" in msg and (opts.check_certificate or opts.encrypt == "require"):
        found = _tls_error(where, url, opts)
        if found:
            return found
    if opts.instance and not url.port and ("connection failed" in msg or "Unable to connect" in msg):
        return ConnectError(f"{where}: instance {opts.instance!r} not found: the SQL Server Browser "
                            f"on {url.host} (UDP 1434) gave no port for it; check the name, or give "
                            "the instance's port in the URL")
    if "Login failed" in msg:
        return ConnectError(f"{where}: login failed for user {url.user!r}: wrong password or user "
                            f"(set [{ep.role}] url or SO_{ep.role.upper()}_URL)")
    if "Cannot open database" in msg:
        return ConnectError(f"{where}: database {url.database!r} does not exist or the login cannot open it")
    if "Unable to connect" in msg or "unavailable or does not exist" in msg:
        try:
            socket.getaddrinfo(url.host, None)
        except OSError:
            return ConnectError(f"{where}: unknown host {url.host!r}")
        return TransientError(f"{where}: no SQL Server answers at {url.host}:{url.port or 1433} "
                              "(server down or port closed)")
    return ConnectError(f"{where}: {msg}")



# Errors worth a retry: a deadlock victim, a lost or refused connection (DB-Library's 200xx),
# a server shutting down, Azure SQL's "service busy / database unavailable". pymssql raises
# OperationalError for nearly every server error, so the number decides, not the class.
TRANSIENT_ERRORS = {1205, 233, 6005, 10053, 10054, 10060, 20003, 20004, 20006, 20009, 20047,
                    40197, 40501, 40613, 49918, 49919, 49920}



def error_number(exc):
    """The server's (or DB-Library's) error number of a pymssql exception, or None."""
    if isinstance(getattr(exc, "number", None), int):       # _mssql's own exceptions (bulk copy)
        return exc.number
    args = getattr(exc, "args", ())
    first = args[0] if args else None
    if isinstance(first, tuple) and first:      # pymssql raises OperationalError((number, message))
        first = first[0]
    if isinstance(first, int):
        return first
    found = re.search(r"DB-Lib error message (\d+)", str(exc))
    return int(found.group(1)) if found else None



def translate(exc, role="source"):
    """A pymssql error raised while working becomes a one-line SoLuigiError."""
    import pymssql
    msg = _message(exc)
    number = error_number(exc)
    if number is not None and not 20000 <= number < 21000:     # the server's own (20xxx are DB-Lib's)
        msg = f"{msg} (error {number})"
    lost = re.search(r"connection|not connected|unable to connect|timed? ?out", msg, re.IGNORECASE)
    if number in (20003, 20047) and "timed out" in msg:     # DB-Library's timer: a query_timeout
        return TransientError(f"{role} SQL Server: a statement ran longer than the URL's query_timeout "
                              f"(raise it, or 0 for none): {msg}")
    if number in TRANSIENT_ERRORS or (isinstance(exc, pymssql.InterfaceError) and lost):
        return TransientError(f"{role} SQL Server: connection lost, server unavailable or deadlock: {msg}")
    if "permission" in msg.lower() or "denied" in msg.lower():
        grant = "SELECT" if role == "source" else "CREATE TABLE, ALTER on the schema, INSERT and ADMINISTER BULK OPERATIONS"
        return SchemaError(f"{role} SQL Server: permission denied, grant {grant} or use another login: {msg}")
    return SoLuigiError(f"{role} SQL Server: {msg}")
