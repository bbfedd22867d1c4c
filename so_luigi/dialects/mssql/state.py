"""The marker tables' SQL that is SQL Server's own (``so_luigi.state`` writes the rest once, in
SQL both databases speak): types and DDL for ``state.schema``, the clock, transaction-scoped
locks, elapsed seconds, and asking the catalog whether a table exists."""
import hashlib

from .connection import ident, literal

# key columns get bounded lengths (an index key stops at 900 bytes, 1700 for a nonclustered one)
TYPES = {"id": "nvarchar(200)", "name": "nvarchar(128)", "text": "nvarchar(max)", "int": "int",
         "bigint": "bigint", "float": "float", "checksum": "decimal(38, 0)", "json": "nvarchar(max)",
         "time": "datetimeoffset"}

now = "SYSDATETIMEOFFSET()"
# when a table's first partition began loading (else when it was planned), for rates
load_started = ("coalesce(min(DATEADD(millisecond, -CAST(l.seconds * 1000 AS int), l.loaded_at)), "
                "t.planned_at)")
# the catalog's answer to "is there such a table", for the name as the SQL spells it
exists_sql = "SELECT CASE WHEN OBJECT_ID(%s, 'U') IS NULL THEN 0 ELSE 1 END"




def __getattr__(name):
    """``lost``: the errors of a connection gone (open another); pymssql imported only when
    a SQL Server destination is used."""
    if name == "lost":
        import pymssql
        return (pymssql.OperationalError, pymssql.InterfaceError)
    raise AttributeError(name)


def seconds_since(column):
    return f"DATEDIFF_BIG(millisecond, {column}, SYSDATETIMEOFFSET()) / 1000.0"


def lock(cur, key):
    """sp_getapplock owned by the transaction: released at commit or rollback, like
    PostgreSQL's advisory xact locks. Resource names stop at 255 characters, so a digest."""
    resource = "so_luigi:" + hashlib.sha1(key.encode("utf-8")).hexdigest()
    cur.execute("DECLARE @r int; EXEC @r = sp_getapplock @Resource = %s, @LockMode = 'Exclusive', "
                "@LockOwner = 'Transaction', @LockTimeout = -1; "
                "IF @r < 0 RAISERROR('so_luigi: marker lock not granted', 16, 1)", (resource,))


def _type(neutral):
    name, _, length = neutral.partition(":")
    return f"nvarchar({length})" if length else TYPES[name]


def _column(c):
    default = "" if c.default is None else f" DEFAULT {now if c.default == 'now' else int(c.default)}"
    return f"{ident(c.name)} {_type(c.type)}{' NULL' if c.null else ' NOT NULL'}{default}"


def _bare(m):
    """The marker schema's name from its quoted form (``[so_luigi]``)."""
    return m[1:-1].replace("]]", "]")


def create_schema(m):
    """CREATE SCHEMA must be alone in its batch, hence EXEC; SCHEMA_ID takes the bare name."""
    return [f"IF SCHEMA_ID({literal(_bare(m))}) IS NULL EXEC({literal('CREATE SCHEMA ' + m)})"]


def create_table(m, name, columns, key):
    spec = [_column(c) for c in columns] + ([f"PRIMARY KEY ({', '.join(ident(k) for k in key)})"] if key else [])
    q = f"{m}.{ident(name)}"
    return f"IF OBJECT_ID({literal(q)}, N'U') IS NULL CREATE TABLE {q} ({', '.join(spec)})"


def add_column(m, table, c):
    """One column a statement: Babelfish refuses ``ADD a, b`` across lines in one batch."""
    q = f"{m}.{ident(table)}"
    return f"IF COL_LENGTH({literal(q)}, {literal(c.name)}) IS NULL ALTER TABLE {q} ADD {_column(c)}"


def drop_key(m, table):
    """The statement text goes through a variable: Babelfish takes no expression in EXEC(...)."""
    q = f"{m}.{ident(table)}"
    return (f"DECLARE @k sysname = (SELECT name FROM sys.key_constraints WHERE type = 'PK' "
            f"AND parent_object_id = OBJECT_ID({literal(q)})); DECLARE @s nvarchar(max); "
            f"IF @k IS NOT NULL BEGIN SET @s = {literal('ALTER TABLE ' + q + ' DROP CONSTRAINT ')} + QUOTENAME(@k); "
            f"EXEC sp_executesql @s; END")


def columns(cur, schema, table):
    """{column: (SQL type, nullable)} of a marker table, from the catalog (tests)."""
    cur.execute("SELECT COLUMN_NAME, DATA_TYPE, CASE WHEN IS_NULLABLE = 'YES' THEN 1 ELSE 0 END "
                "FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (schema, table))
    return {name: (kind, bool(null)) for name, kind, null in cur.fetchall()}
