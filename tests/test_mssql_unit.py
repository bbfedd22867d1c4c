"""The SQL Server code that needs no server: its SQL parses as T-SQL, its partition reads and
DDL are what they should be, and real pymssql connection failures become one-line errors.

These are not tests of SQL Server behaviour: tests/test_mssql_integration.py runs the same code
against a real server when SO_TEST_MSSQL_URL is set."""
import os
import re

import pytest
import sqlglot

from so_luigi import planning
from so_luigi.testing import sample
from so_luigi.config import Endpoint, parse_url
from so_luigi.dialects.mssql import catalog as ms_catalog, connection as ms_connection
from so_luigi.dialects.mssql.connection import ident as mssql_ident
from so_luigi.dialects.mssql.catalog import sql
from so_luigi.testing.embedded import free_port
from so_luigi.errors import ConnectError, TransientError

CATALOG = ["tables", "columns", "primary_key", "indexes", "defaults", "constraints"]


def tsql(text):
    return sqlglot.parse_one(re.sub(r"%\(\w+\)s|%s", "N'x'", text), read="tsql")


@pytest.mark.parametrize("name", CATALOG)
def test_catalog_queries_parse_as_tsql(name):
    assert tsql(sql(name)) is not None


def test_catalog_takes_names_from_information_schema_and_joins_sys_by_id():
    columns = sql("columns")
    assert "INFORMATION_SCHEMA.COLUMNS" in columns and "sc.object_id = OBJECT_ID(" in columns
    indexes = sql("indexes")
    assert "ic.object_id = i.object_id" in indexes and "col.column_id = ic.column_id" in indexes


def test_partition_select_and_boundaries():
    table = sample.table_def("Votes")
    query, params = ms_catalog.select_sql(table, 100, 200)
    assert query == ("SELECT [Id], [PostId], [UserId], [BountyAmount], [VoteTypeId], [CreationDate] "
                     "FROM [dbo].[Votes] WHERE [Id] > %s AND [Id] <= %s")
    assert params == (100, 200)
    tsql(query)
    whole, none = ms_catalog.select_sql(table, None, None)
    assert none is None and whole.endswith("FROM [dbo].[Votes]")
    # pymssql reads every '%' of a query that has parameters as a placeholder's start
    table.name = "100% off"
    assert ms_catalog.select_sql(table, 1, None)[0].endswith("FROM [dbo].[100%% off] WHERE [Id] > %s")
    assert ms_catalog.select_sql(table, None, None)[0].endswith("FROM [dbo].[100% off]")
    bounds = planning.boundaries_sql(mssql_ident, "[dbo].[Votes]", "Id", 500000)
    assert "%" not in bounds
    tsql(bounds)


def test_identifiers_with_brackets_are_quoted():
    assert mssql_ident("we]ird") == "[we]]ird]"
    assert ms_connection.qualified("dbo", "Post History") == "[dbo].[Post History]"


def test_sample_ddl_parses_as_tsql():
    for name in sample.SCHEMA:
        tsql(sample.mssql_create_sql(sample.table_def(name)))


def _ep(url):
    return Endpoint(parse_url(url), "dbo", "source")


def test_refused_port_is_a_transient_one_line_error():
    ep = _ep(f"mssql://sa:s3cret@127.0.0.1:{free_port()}/StackOverflow2010")
    with pytest.raises(TransientError) as info:
        ms_connection.connect(ep)
    text = str(info.value)
    assert "no SQL Server answers at 127.0.0.1" in text and "\n" not in text and "s3cret" not in text


def test_unknown_host_is_named():
    with pytest.raises(ConnectError, match="unknown host 'no-such-host.invalid'"):
        ms_connection.connect(_ep("mssql://sa:s3cret@no-such-host.invalid:1433/StackOverflow2010"))


def test_login_failed_message_from_dblib_is_made_one_line():
    import pymssql
    exc = pymssql.OperationalError((18456, b"Login failed for user 'sa'.DB-Lib error message 20018, severity 14:\n"
                                           b"General SQL Server error: Check messages from the SQL Server\n"
                                           b"DB-Lib error message 20002, severity 9:\nAdaptive Server connection failed\n"))
    err = ms_connection.connect_error(exc, _ep("mssql://sa:pw@db.example:1433/so"))
    assert isinstance(err, ConnectError) and "login failed for user 'sa'" in str(err)


@pytest.mark.parametrize("query, words", [
    ("encrypt=maybe", "encrypt='maybe': use off or request or require"),
    ("trust_server_certificate=perhaps", "trust_server_certificate='perhaps': use yes or no"),
    ("ca_file=/no/such/ca.pem", "ca_file='/no/such/ca.pem' is not a readable file"),
    ("tds_version=8.0", "tds_version='8.0': use 7.0 or 7.1"),
    ("application_intent=read", "application_intent='read': use readwrite or readonly"),
    ("login_timeout=soon", "login_timeout='soon': a whole number of seconds"),
    ("query_timeout=-1", "query_timeout='-1': a whole number of seconds, 0 or more"),
    ("timeout=5", "unknown option 'timeout' in the URL's query; use encrypt,"),
    ("encrypt=off&trust_server_certificate=yes", "encrypt=off with certificate options"),
    ("trust_server_certificate=yes&ca_file=system", "trust_server_certificate=yes and ca_file together"),
    ("certificate_hostname=db", "certificate_hostname names what a checked certificate must carry"),
    ("encrypt=require&encrypt=off", "option 'encrypt' given twice"),
])
def test_a_bad_connection_option_is_one_line_naming_it(query, words):
    from so_luigi.errors import ConfigError
    with pytest.raises(ConfigError) as info:
        parse_url(f"mssql://sa:s3cret@db.example.com/so?{query}", "target")
    text = str(info.value)
    assert words in text and text.startswith("bad target URL in [target] url (or SO_TARGET_URL): "), text
    assert "\n" not in text and "s3cret" not in text


def test_connection_options_become_the_drivers_arguments(tmp_path, monkeypatch):
    from so_luigi import mssql_options as options
    monkeypatch.setattr(options.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv("FREETDSCONF", raising=False)
    plain = parse_url("mssql://sa:s3cret@db.example.com:1444/so?tds_version=7.3&application_intent=ReadOnly"
                      "&login_timeout=5&query_timeout=600&encrypt=request")
    args = options.connect_args(plain, plain.options)
    assert args == dict(server="db.example.com", port="1444", user="sa", password="s3cret", database="so",
                        login_timeout=5, timeout=600, read_only=True, encryption="request", tds_version="7.3")
    for url in ("mssql://sa:pw@sql01%5CSALES/so", "mssql://sa:pw@sql01/so?instance=SALES",
                "mssql://sa:pw@sql01\\SALES/so"):
        named = parse_url(url)      # no port: FreeTDS asks the Browser; a port given wins
        assert options.connect_args(named, named.options)["server"].lower() == "sql01\\sales", url
    with_port = parse_url("mssql://sa:pw@sql01:1500/so?instance=SALES")
    assert options.connect_args(with_port, with_port.options)["port"] == "1500"
    from so_luigi.errors import ConfigError
    with pytest.raises(ConfigError, match="two instances named"):
        parse_url("mssql://sa:pw@sql01%5CSALES/so?instance=HR")

    # certificate checking is only in freetds.conf: a section of so_luigi's own, no password in it
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    checked = parse_url(f"mssql://sa:s3cret@db.example.com/so?encrypt=require&ca_file={ca}"
                        "&certificate_hostname=sql.example.com")
    args = options.connect_args(checked, checked.options)
    conf = open(os.environ["FREETDSCONF"]).read()
    section = conf[conf.index(f"[{args['server']}]"):]
    for line in ("host = db.example.com", "port = 1433", "encryption = require", f"ca file = {ca}",
                 "check certificate hostname = yes", "certificate hostname = sql.example.com"):
        assert f"\t{line}\n" in section, conf
    assert "s3cret" not in conf and args["password"] == "s3cret"
    # require checks against the system's CAs unless told to trust; request checks nothing
    assert parse_url("mssql://sa:pw@h/so?encrypt=require").options.check_certificate
    assert not parse_url("mssql://sa:pw@h/so?encrypt=require&trust_server_certificate=yes").options.check_certificate
    assert not parse_url("mssql://sa:pw@h/so").options.check_certificate
    # a second server in the same process: one file holding both sections
    other = parse_url(f"mssql://sa:pw@other.example.com/so?ca_file={ca}")
    name = options.connect_args(other, other.options)["server"]
    conf = open(os.environ["FREETDSCONF"]).read()
    assert f"[{name}]" in conf and f"[{args['server']}]" in conf


class _Answers:
    """A stand-in for a pymssql connection that answers each statement from a list in turn
    (an exception is raised): what is checked is the fallback logic, not SQL Server."""

    def __init__(self, *answers):
        self.answers, self.sent = list(answers), []

    def cursor(self):
        conn = self

        class Cursor:
            def execute(self, sql, params=None):
                conn.sent.append(sql)
                self.answer = conn.answers.pop(0)
                if isinstance(self.answer, Exception):
                    raise self.answer

            def fetchone(self):
                return self.answer
        return Cursor()


def test_table_size_falls_back_to_sp_spaceused_without_view_database_state():
    from so_luigi.dialects.base import Table
    table = Table(schema="dbo", name="Posts", columns=[])
    assert ms_catalog.table_bytes(_Answers((8192 * 10,)), table) == 81920
    denied = Exception("VIEW DATABASE STATE permission denied in database 'StackOverflow2010'.")
    conn = _Answers(denied, ("Posts", "3729195   ", "2550000 KB", "2490184 KB", "8800 KB", "51016 KB"))
    assert ms_catalog.table_bytes(conn, table) == 2490184 * 1024
    assert sqlglot.parse_one(conn.sent[1].replace("%s", "'x'"), read="tsql") is not None
    assert ms_catalog.table_bytes(_Answers(denied, denied), table) is None
    assert ms_catalog.table_bytes(_Answers((None,), None), table) is None


class _Histogram:
    """A cursor that answers STATISTICS_SQL with scripted rows (or raises), then COUNT_BIG and
    the numbered boundaries: only the planner's decisions are under test here, not SQL Server."""
    def __init__(self, steps, count=None, bounds=()):
        self.steps, self.count, self.bounds, self.sent = steps, count, list(bounds), []

    def execute(self, sql, params=None):
        self.sent.append(sql)
        if "dm_db_stats_histogram" in sql and isinstance(self.steps, Exception):
            raise self.steps

    def fetchall(self):
        return self.steps if "dm_db_stats_histogram" in self.sent[-1] else [(b,) for b in self.bounds]

    def fetchone(self):
        return (self.count,)

    def cursor(self):
        return self


def test_statistics_query_parses_as_tsql_and_joins_the_key_index_by_id():
    tree = tsql(ms_catalog.STATISTICS_SQL)
    assert tree is not None
    text = " ".join(ms_catalog.STATISTICS_SQL.split())
    assert "dm_db_stats_histogram(i.object_id, i.index_id)" in text
    assert "dm_db_stats_properties(i.object_id, i.index_id)" in text
    assert "i.object_id = OBJECT_ID(%s) AND i.is_primary_key = 1" in text


def test_a_big_table_is_cut_from_fresh_statistics_else_its_rows_are_numbered(monkeypatch):
    import pymssql
    table = sample.table_def("Votes")
    monkeypatch.setattr(planning, "STATISTICS_FROM_ROWS", 1000)
    # (range_high_key, range_rows + equal_rows, rows when taken, rows changed since)
    fresh = [(1, 1.0, 4000, 10), (2001, 2000.0, 4000, 10), (6001, 1999.0, 4000, 10)]
    conn = _Histogram(fresh)
    assert ms_catalog.count_and_boundaries(conn, table, lambda est: 1000) == (4000, [1000, 2000, 3999], 1000)
    assert conn.sent == [ms_catalog.STATISTICS_SQL]          # no count, no numbering
    stale = [(k, n, 4000, 401) for k, n, _, _ in fresh]
    small = [(k, n, 999, 0) for k, n, _, _ in fresh]
    missing = pymssql.ProgrammingError(208, b"Invalid object name 'sys.dm_db_stats_histogram'.")
    for answer in (stale, small, [], missing):
        conn = _Histogram(answer, count=4000, bounds=[1000, 2000, 3000, 4000])
        assert ms_catalog.count_and_boundaries(conn, table, lambda est: 1000) == (4000, [1000, 2000, 3000, 4000], 1000)
        assert "ROW_NUMBER()" in conn.sent[-1]
    # one partition by the statistics: counted exactly, never numbered
    conn = _Histogram(fresh, count=4002)
    assert ms_catalog.count_and_boundaries(conn, table, lambda est: 5000) == (4002, [], 5000)


def test_a_key_of_any_type_is_cut_at_its_histogram_points(monkeypatch):
    """A composite (nvarchar, int) key: the histogram of its first column, read as text, gives
    one-value prefixes as cuts; the table is marked cut by keys."""
    from so_luigi.dialects.base import Column, Table
    table = Table(schema="dbo", name="T", columns=[Column("code", "nvarchar", False, 20, source_type="nvarchar(20)"),
                                                   Column("n", "int", False, source_type="int")],
                  primary_key=["code", "n"])
    fresh = [(k, 1000.0, 4000, 0) for k in ("a", "b", "c", "d")]
    conn = _Histogram(fresh)
    monkeypatch.setattr(planning, "STATISTICS_FROM_ROWS", 1000)
    assert ms_catalog.count_and_boundaries(conn, table, lambda est: 1000) == (4000, [["a"], ["b"], ["c"]], 1000)
    assert table.cut == "keys" and len(conn.sent) == 1
    assert "CAST(h.range_high_key AS nvarchar(20)), 0)" in conn.sent[0]


def test_key_columns_are_resolved_as_the_server_compares_names():
    """Babelfish's KEY_COLUMN_USAGE says 'id' where COLUMNS says 'Id' (a case-insensitive
    collation, as SQL Server's default is): the key is the table's own column."""
    from so_luigi.dialects.base import Column, Table
    from so_luigi.errors import SchemaError
    table = Table(schema="dbo", name="Posts", columns=[Column("Id", "int"), Column("Body", "nvarchar")])
    assert ms_catalog.resolve_column(table, "Id") == "Id" and ms_catalog.resolve_column(table, "id") == "Id"
    table.primary_key = [ms_catalog.resolve_column(table, "ID")]
    assert table.int_key == "Id"
    both = Table(schema="dbo", name="T", columns=[Column("a", "int"), Column("A", "int")])   # a CS collation
    assert ms_catalog.resolve_column(both, "A") == "A"
    with pytest.raises(SchemaError, match="key or index column 'x' is not one of its columns"):
        ms_catalog.resolve_column(table, "x")


class _ServerError(Exception):
    pass


@pytest.mark.parametrize("args,expected", [
    ((33557097, b'relation "x_so_luigi.replications" does not exist DB-Lib error message 20018, severity 16:\n'
                b'General SQL Server error: Check messages from the SQL Server\n'),
     'target SQL Server: relation "x_so_luigi.replications" does not exist (error 33557097)'),
    (((208, b"Invalid object name 'so_luigi.loaded'.DB-Lib error message 20018, severity 16:\n"
            b"General SQL Server error: Check messages from the SQL Server\n"),),
     "target SQL Server: Invalid object name 'so_luigi.loaded'. (error 208)"),
])
def test_server_errors_are_one_readable_line_with_their_number(args, expected):
    assert str(ms_connection.translate(_ServerError(*args), "target")) == expected


def test_a_key_of_any_orderable_type_bounds_partitions_in_the_keys_order():
    """(a, b) > (1, 'x') and (a, b) <= (5, 'y'), spelled out for T-SQL (which has no row-value
    comparison), each value converted back from its text to the column's own type."""
    from so_luigi.dialects.base import Column, Table
    table = Table("dbo", "t", [Column("a", "int", source_type="int"),
                               Column("b", "nvarchar", length=20, source_type="nvarchar(20)"),
                               Column("d", "datetime2", precision=7, source_type="datetime2(7)")],
                  primary_key=["a", "b"], cut="keys")
    sql_text, params = ms_catalog.select_sql(table, ["1", "x"], ["5", "y"])
    assert ("WHERE (([a] > CONVERT(int, %s, 0)) OR ([a] = CONVERT(int, %s, 0) AND [b] > CONVERT(nvarchar(20), %s, 0)))"
            in sql_text)
    assert params == ("1", "1", "x", "5", "5", "y", "5", "y")
    tsql(sql_text)
    assert ms_catalog.select_sql(table, None, None) == ("SELECT [a], [b], [d] FROM [dbo].[t]", None)
    # a key type whose text does not come back exactly leaves the table one partition
    assert ms_catalog.ordered_key(table) is not None
    table.primary_key = ["d", "a"]
    assert ms_catalog.ordered_key(table) is not None
    table.columns.append(Column("f", "float", source_type="float"))
    table.primary_key = ["f"]
    assert ms_catalog.ordered_key(table) is None


def test_boundaries_of_any_key_round_trip_through_the_markers():
    from so_luigi.state import markers
    assert markers._bounds(None, None, '["1", "x"]', None) == (["1", "x"], None)
    assert markers._bounds(5, 9, None, None) == (5, 9)


class _SequenceCatalog:
    """A cursor answering INFORMATION_SCHEMA.SEQUENCES and sys.sequences as a server would."""

    def __init__(self, last=None, known=True):
        self.asked, self.answer, self.last, self.known = [], None, last, known

    def execute(self, sql, params=None):
        self.asked.append((sql, params))
        if "INFORMATION_SCHEMA.SEQUENCES" in sql:
            self.answer = (params[1] if len(params) > 1 else "dbo", "int", 1000, 10, -2147483648, 2147483647, 0) \
                if self.known else None
        elif self.last == "missing":
            raise RuntimeError("Invalid column name 'last_used_value'")
        else:
            self.answer = (self.last,)

    def fetchone(self):
        return self.answer

    def fetchall(self):
        return [self.answer] if self.answer else []


@pytest.mark.parametrize("default,schema,name", [
    ("(NEXT VALUE FOR [Sales].[Ticket]]No])", "Sales", "Ticket]No"),
    ("(NEXT VALUE FOR [Ticket])", "dbo", "Ticket"),
    ("(next value for Sales.Ticket)", "Sales", "Ticket"),
    ("nextval('ticket')", "dbo", "ticket"),                   # Babelfish's catalog
    ("(nextval('master_dbo.ticket'::regclass))", "dbo", "ticket"),
])
def test_a_default_drawing_from_a_sequence_names_it_with_its_settings(default, schema, name):
    cur = _SequenceCatalog(last=1040)
    seq = ms_catalog._sequence(cur, "dbo", default)
    assert cur.asked[0][1] == (name, schema)
    assert seq == {"name": name, "schema": schema, "type": "int", "start": 1000, "increment": 10, "min": -2147483648,
                   "max": 2147483647, "cache": 1, "cycle": False, "last": 1040, "standalone": True}


def test_a_sequence_never_used_or_on_a_server_without_last_used_value_has_no_last_and_others_are_none():
    assert ms_catalog._sequence(_SequenceCatalog(last=None), "dbo", "(NEXT VALUE FOR dbo.T)")["last"] is None
    assert ms_catalog._sequence(_SequenceCatalog(last="missing"), "dbo", "(NEXT VALUE FOR dbo.T)")["last"] is None
    assert ms_catalog._sequence(_SequenceCatalog(known=False), "dbo", "(NEXT VALUE FOR dbo.T)") is None
    lost = _SequenceCatalog(known=False)            # not in the table's schema: asked by name alone
    assert ms_catalog._sequence(lost, "Sales", "nextval('ticket')") is None and lost.asked[1][1] == ("ticket",)
    for other in ("((0))", "(getdate())", "(N'nextval(''x'')')", None):
        assert ms_catalog._sequence(_SequenceCatalog(), "dbo", other) is None


def test_the_driver_option_chooses_how_a_sources_rows_are_read(tmp_path):
    """driver=auto reads through mssql-python's Arrow batches where it is installed and can honour
    the URL; pymssql otherwise, saying why; driver=mssql-python fails where it cannot."""
    from so_luigi.dialects.mssql import fast
    from so_luigi.errors import ConfigError, ConnectError
    assert parse_url("mssql://sa:pw@h/so").options.driver == ""
    assert parse_url("mssql://sa:pw@h/so?driver=mssql-python").options.driver == "mssql-python"
    with pytest.raises(ConfigError, match="driver='odbc': use auto or pymssql or mssql-python"):
        parse_url("mssql://sa:pw@h/so?driver=odbc")
    assert fast.why_not(parse_url("mssql://sa:pw@h/so?driver=pymssql")) == "the URL says driver=pymssql"
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    if fast.missing() is None:
        assert fast.why_not(parse_url("mssql://sa:pw@h/so")) is None
        assert fast.why_not(parse_url("mssql://sa:pw@h/so?encrypt=require&ca_file=system")) is None
        assert "ca_file" in fast.why_not(parse_url(f"mssql://sa:pw@h/so?ca_file={ca}"))
        assert "tds_version" in fast.why_not(parse_url("mssql://sa:pw@h/so?tds_version=7.3"))
    else:
        assert "not installed" in fast.why_not(parse_url("mssql://sa:pw@h/so")) or "libltdl" in fast.missing()
    with pytest.raises(ConnectError, match="driver=mssql-python, but"):
        fast.why_not(parse_url(f"mssql://sa:pw@h/so?driver=mssql-python&ca_file={ca}"))


def test_the_fast_drivers_connection_string_and_placeholders():
    from so_luigi.dialects.mssql import fast
    url = parse_url("mssql://sa:p%3Bw%7Dd@db.example.com:1444/so?application_intent=readonly")
    assert fast.connection_string(url, "yes") == ("Server=db.example.com,1444;Database=so;UID=sa;PWD={p;w}}d};"
                                                  "Encrypt=yes;TrustServerCertificate=yes;ApplicationIntent=ReadOnly")
    named = parse_url("mssql://sa:pw@sql01/so?instance=SALES&encrypt=require&certificate_hostname=sql.example.com")
    text = fast.connection_string(named, "yes")
    assert text.startswith("Server=sql01\\SALES;") and "TrustServerCertificate=no;HostnameInCertificate=sql.example.com" in text
    # request (the default) encrypts where the server can, as FreeTDS does; off never asks
    assert fast._encrypt_choices(parse_url("mssql://sa:pw@h/so").options) == ["yes", "no"]
    assert fast._encrypt_choices(parse_url("mssql://sa:pw@h/so?encrypt=off").options) == ["no"]
    assert fast._encrypt_choices(named.options) == ["yes"]
    assert fast._qmark("SELECT [a%b] FROM t WHERE k > %s AND k <= %s AND x LIKE '%%'", (1, 2)) == \
        ("SELECT [a%b] FROM t WHERE k > ? AND k <= ? AND x LIKE '%'", (1, 2))
    assert fast._qmark("SELECT 1", None) == ("SELECT 1", ())


def test_a_destination_read_back_as_arrow_checksums_as_pymssql_rows_do():
    """Full verification from PostgreSQL reads SQL Server's rows back: as mssql-python's Arrow
    batches (fast.canonical_checksum) they must sum to what pymssql's rows give
    (checksum.rows_checksum), value for value, or a good copy would be called broken."""
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install so_luigi[test])")
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal
    from hypothesis import given, settings, strategies as st
    from so_luigi.dialects.base import Column, Table
    from so_luigi.dialects.mssql import fast
    from so_luigi.dialects.mssql.checksum import canonical_encoders, rows_checksum

    # (PostgreSQL type the column came from, Arrow type mssql-python returns, pymssql's value of
    # a Python value, mssql-python's value of it)
    columns = [
        ("int4", pa.int32(), None, None), ("int8", pa.int64(), None, None), ("bool", pa.bool_(), None, None),
        ("numeric", pa.decimal128(12, 4), lambda v: v.quantize(Decimal("0.0001")), None),
        ("numeric", pa.decimal128(38, 10), lambda v: v.quantize(Decimal("1E-10")), None),
        ("numeric", pa.decimal128(10, 0), lambda v: v.quantize(Decimal(1)), None),
        ("numeric", pa.decimal128(38, 0), None, None),
        ("float8", pa.float64(), None, None), ("float4", pa.float32(), None, None),
        ("timestamp", pa.timestamp("us"), None, None),
        ("timestamptz", pa.timestamp("us", tz="+00:00"), None, lambda v: v.astimezone(timezone.utc)),
        ("date", pa.date32(), None, None), ("time", pa.time64("ns"), None, None),
        ("uuid", pa.large_string(), None, lambda v: str(v).upper()),
        ("text", pa.large_string(), None, None), ("bytea", pa.large_binary(), None, None),
    ]
    table = Table(schema="dbo", name="T", columns=[Column(name=f"c{i}", data_type=t, source_type=t)
                                                    for i, (t, _, _, _) in enumerate(columns)])
    zone = st.timedeltas(min_value=timedelta(hours=-14), max_value=timedelta(hours=14)).map(
        lambda d: timezone(timedelta(minutes=d // timedelta(minutes=1))))
    values = [st.integers(-2**31, 2**31 - 1), st.integers(-2**63, 2**63 - 1), st.booleans(),
              st.decimals(-10**7, 10**7, places=4, allow_nan=False),
              st.decimals(-10**7, 10**7, places=10, allow_nan=False), st.decimals(-10**9, 10**9, places=0, allow_nan=False),
              st.sampled_from([Decimal("9" * 38), Decimal("-" + "9" * 38), Decimal("1" * 30), Decimal(0)]),
              st.floats(allow_nan=False, allow_infinity=False), st.floats(width=32, allow_nan=False, allow_infinity=False),
              st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
              st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=zone),
              st.dates(), st.times(), st.uuids(), st.text(st.characters(blacklist_categories=("Cs",))),
              st.binary(max_size=20)]

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(*[st.none() | v for v in values]), min_size=1, max_size=20))
    def check(rows):
        pymssql_rows = [tuple(v if f is None or v is None else f(v) for v, (_, _, f, _) in zip(r, columns)) for r in rows]
        arrays = [pa.array([v if g is None or v is None else g(v) for v in col], kind)
                  for col, (_, kind, _, g) in zip(zip(*rows), columns)]
        batch = pa.RecordBatch.from_arrays(arrays, names=[c.name for c in table.columns])
        assert fast.canonical_checksum(batch, table) == rows_checksum(pymssql_rows, canonical_encoders(table))
    check()


def test_the_canonical_text_by_type_is_the_canonical_text():
    """checksum._canonical (a dict by exact type) gives what _by_isinstance gives, for
    every kind of value either driver returns, subclasses included."""
    import uuid as uuid_
    from datetime import datetime, timezone
    from decimal import Decimal
    from hypothesis import given, settings, strategies as st
    from so_luigi.dialects.mssql.checksum import _by_isinstance, _canonical as canonical

    class Text(str):
        pass
    values = (st.integers() | st.booleans() | st.floats() | st.decimals(allow_nan=False) | st.binary()
              | st.binary().map(bytearray) | st.binary().map(memoryview) | st.datetimes()
              | st.datetimes(timezones=st.just(timezone.utc)) | st.dates() | st.times() | st.uuids()
              | st.text(st.characters(blacklist_categories=("Cs",))) | st.text().map(Text))

    @settings(max_examples=500, deadline=None)
    @given(values)
    def check(value):
        assert canonical(value) == _by_isinstance(value)
    check()
    assert canonical(Decimal("1.5000")) == "1.5" and canonical(True) == "t" and canonical(b"\x00\xff") == "00ff"
    assert canonical(uuid_.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert canonical(datetime(2010, 1, 1, 12, tzinfo=timezone.utc)) == "2010-01-01 12:00:00+00:00"


def test_a_login_mssql_python_cannot_make_is_one_line_without_the_password():
    """driver=mssql-python fails naming the URL without its password; auto falls back to
    pymssql, saying why (here nothing listens: pymssql would then fail on its own)."""
    from so_luigi.config import Endpoint
    from so_luigi.dialects.mssql import fast
    from so_luigi.errors import ConnectError
    if fast.missing():
        pytest.skip(f"mssql-python: {fast.missing()}")
    from so_luigi.testing.embedded import free_port
    port = free_port()
    strict = parse_url(f"mssql://sa:Secret%3B1@127.0.0.1:{port}/so?driver=mssql-python&login_timeout=3&encrypt=off")
    with pytest.raises(ConnectError) as err:
        fast.connect(Endpoint(strict, "dbo", "source"), "READ COMMITTED")
    said = str(err.value)
    assert said.startswith(f"source mssql://sa:***@127.0.0.1:{port}/so") and "driver=mssql-python could not connect" in said
    assert "Secret" not in said and "\n" not in said
    auto = parse_url(f"mssql://sa:Secret%3B1@127.0.0.1:{port}/so?login_timeout=3&encrypt=off")
    assert fast.connect(Endpoint(auto, "dbo", "source"), "READ COMMITTED") is None
    assert fast.why_not(auto).startswith("mssql-python could not connect (") and "Secret" not in fast.why_not(auto)


def test_a_uuid_domain_read_back_as_arrow_is_lower_case_as_pymssql_gives_it():
    """A PostgreSQL domain over uuid is a uniqueidentifier in SQL Server: mssql-python returns it
    in upper case, pymssql as a UUID (lower case), and the source's side hashed lower case."""
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install so_luigi[test])")
    import uuid as uuid_
    from so_luigi.dialects.base import Column, Table
    from so_luigi.dialects.mssql import fast
    from so_luigi.dialects.mssql.checksum import canonical_encoders, held_types, rows_checksum
    col = Column(name="u", data_type="ticket_id", source_type="public.ticket_id", user_type=True)
    table = Table(schema="public", name="T", columns=[col], dialect="postgres",
                  types=[{"typname": "ticket_id", "kind": "d", "base": "uuid"}])
    assert held_types(table) == {"u": "uniqueidentifier"}
    value = uuid_.UUID("58185e0d-0000-4000-8000-00000000abcd")
    batch = pa.RecordBatch.from_arrays([pa.array([str(value).upper(), None], pa.large_string())], names=["u"])
    assert fast.canonical_checksum(batch, table) == rows_checksum([(value,), (None,)], canonical_encoders(table))


def test_a_replacement_character_sends_the_partition_through_pymssql():
    """mssql-python turns an unpaired UTF-16 surrogate into U+FFFD, which both sides would then
    hash alike: a batch holding U+FFFD stops the read (a transient error, so the task retries)
    and the table's next read in this process goes through pymssql, which refuses a surrogate
    and copies a real U+FFFD as it is."""
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install so_luigi[test])")
    from so_luigi.config import Endpoint
    from so_luigi.dialects.base import Column, Table
    from so_luigi.dialects.mssql import fast
    from so_luigi.encode_arrow import BatchEncoder
    from so_luigi.errors import TransientError
    table = Table(schema="dbo", name="T", columns=[
        Column(name="Id", data_type="int", kind="int", pg_type="integer", source_type="int"),
        Column(name="t", data_type="nvarchar", kind="text", pg_type="text", source_type="nvarchar(10)")],
        primary_key=["Id"])
    batches = [pa.RecordBatch.from_arrays([pa.array([1, 2]), pa.array(["fine", "x\ufffdy"], pa.large_string())],
                                          names=["Id", "t"])]

    class Cursor:
        def execute(self, *args):
            pass

        def arrow_batch(self, size):
            return batches.pop(0) if batches else pa.RecordBatch.from_arrays(
                [pa.array([], pa.int64()), pa.array([], pa.large_string())], names=["Id", "t"])

    class Conn:
        closed = False

        def cursor(self):
            return Cursor()

        def close(self):
            self.closed = True

    class Sink:
        data = b""

        def write(self, data, rows):
            self.data += bytes(data)
    ep = Endpoint(parse_url("mssql://sa:pw@h/so"), "dbo", "source")
    conn, sink = Conn(), Sink()
    with pytest.raises(TransientError, match="holds U\\+FFFD.*through pymssql"):
        fast.reader(conn, table, None, None, True, 1 << 20, BatchEncoder(table), ep)(sink)
    assert conn.closed and sink.data == b""
    if fast.missing() is None:
        assert fast.open_for(ep, lambda: "READ COMMITTED", table) is None


def test_the_lines_text_covers_every_postgres_type_sql_server_holds_as_other_than_text():
    """Every PostgreSQL type that SQL Server holds as something else than nvarchar has its
    "lines" text on both sides (a missing one would hash SQL Server's own text of it)."""
    from so_luigi.dialects.mssql import checksum as ms_checksum
    from so_luigi.dialects.mssql.types import FROM_POSTGRES
    from so_luigi.dialects.postgres import checksum as pg_checksum
    from so_luigi.dialects.postgres.forms import TEXT_FORM
    held_otherwise = {t for t, rule in FROM_POSTGRES.items()
                      if t not in TEXT_FORM and not (isinstance(rule, str) and rule.startswith("nvarchar"))
                      and t not in ("varchar",)}
    assert held_otherwise == set(pg_checksum.LINE_TEXT) | {"bpchar"}
    assert set(ms_checksum.LINE_TEXT) == held_otherwise


@pytest.mark.parametrize("server,expected", [
    ("babelfish", "nvarchar"),        # HASHBYTES of nvarchar is of its UTF-8
    ("2019", "collate"),              # UTF-16 for nvarchar, UTF-8 through a _UTF8 collation
    ("2016", None),                   # UTF-16, and error 448 for the collation: rows read back
])
def test_the_utf8_probe_picks_the_form_each_server_hashes_utf8_with(server, expected):
    """checksum.utf8_form against stand-in cursors answering as each kind of server does (the
    real ones: the integration suite on Babelfish; on SQL Server, its lines test)."""
    import hashlib
    import pymssql
    from so_luigi.dialects.mssql import checksum as ms_checksum

    class Cursor:
        def execute(self, sql):
            text = ms_checksum.UTF8_PROBE
            collate = "COLLATE" in sql
            if collate and server == "2016":
                raise pymssql.OperationalError(448, b"Invalid collation 'Latin1_General_100_BIN2_UTF8'.")
            utf8 = server == "babelfish" or collate
            self.row = (hashlib.md5(text.encode("utf-8" if utf8 else "utf-16-le")).digest(),)

        def fetchone(self):
            return self.row
    assert ms_checksum.utf8_form(Cursor()) == expected


def _mapped_table(*specs):
    """A SQL Server table of (name, DATA_TYPE, length, precision, scale) columns, mapped for PostgreSQL."""
    from so_luigi.dialects.base import Column, Table
    from so_luigi.dialects.postgres.types import map_table
    table = Table(schema="dbo", name="T", dialect="mssql", columns=[
        Column(name=n, data_type=t, source_type=t, length=length, precision=p, scale=sc, nullable=True)
        for n, t, length, p, sc in specs])
    assert map_table(table, "mssql") == []
    return table


def test_the_lines_text_from_sql_server_covers_every_type_but_those_read_as_text():
    """Every SQL Server type PostgreSQL takes has its "lines" text, so its checksum is computed by
    the source server, but those read as their text (xml, sql_variant, hierarchyid, spatial): a
    table holding one keeps the md5 of its COPY lines, hashed as they are read."""
    from so_luigi.dialects.mssql import checksum as ms_checksum
    from so_luigi.dialects.postgres.types import MSSQL
    assert set(MSSQL) - set(ms_checksum.FROM_MSSQL) == {"xml", "sql_variant", "hierarchyid", "geography", "geometry"}
    assert set(ms_checksum.FROM_MSSQL) <= set(MSSQL)
    every = [(f"c{n}", t, 10 if t.endswith(("char", "binary")) else None, 12 if t in ("decimal", "numeric") else 3,
              2 if t in ("decimal", "numeric") else None) for n, t in enumerate(sorted(ms_checksum.FROM_MSSQL))]
    table = _mapped_table(*every)
    assert ms_checksum.lines_computable(table)
    sql, params = ms_checksum.line_checksum_sql("dbo", table, "nvarchar")
    assert params is None and sqlglot.parse_one(sql, read="tsql")
    assert sql.count("DATEDIFF_BIG") == 5 and "CAST(t.[c" in sql and "AS datetime2(3))" in sql
    assert not ms_checksum.lines_computable(_mapped_table(("a", "int", None, 10, 0), ("x", "xml", None, None, None)))
    assert not ms_checksum.lines_computable(_mapped_table(("d", "decimal", None, None, None)))   # no precision
    overridden = _mapped_table(("a", "int", None, 10, 0), ("t", "datetime", None, 3, None))
    overridden.columns[1].pg_type = "text"
    assert not ms_checksum.lines_computable(overridden)


def test_a_postgres_destination_asks_sql_server_for_the_lines_checksum_only_where_it_computes_it(monkeypatch):
    """From SQL Server: "lines" where the source computes it (the rows then go unhashed), else
    none (hashed as read); with a U+0000 policy that changes values, none."""
    from types import SimpleNamespace
    from so_luigi.dialects.mssql import checksum as ms_checksum
    from so_luigi.dialects.mssql.source import MssqlSource
    from so_luigi.dialects.postgres.destination import PostgresDestination
    ep = Endpoint(parse_url("mssql://u:p@127.0.0.1:1/db"), "dbo", "source")
    monkeypatch.setattr("so_luigi.dialects.mssql.fast.preload", lambda url: None)
    src = MssqlSource(ep)
    dst = PostgresDestination(Endpoint(parse_url("postgresql://u@127.0.0.1:1/db"), "public", "target"))
    table = _mapped_table(("a", "int", None, 10, 0), ("t", "datetime", None, 3, None))
    monkeypatch.setitem(ms_checksum._UTF8_FORMS, ep.url.raw, "nvarchar")
    assert dst.checksum_method(src, table, None) == "lines"
    assert dst.checksum_method(src, _mapped_table(("x", "xml", None, None, None)), None) is None
    with monkeypatch.context() as m:
        m.setattr("so_luigi.config.section", lambda name: SimpleNamespace(nul="strip"))
        assert dst.checksum_method(src, table, None) is None
    monkeypatch.setitem(ms_checksum._UTF8_FORMS, ep.url.raw, None)
    assert dst.checksum_method(src, table, None) is None


def test_rows_read_for_verification_leave_out_what_the_destination_generates():
    """The pymssql path's CSV and a bulk file send only the columns the destination loads: a
    computed column is read (for the checksum) but not sent."""
    from dataclasses import replace
    from so_luigi.dialects.mssql.source import _loaded
    table = _mapped_table(("a", "int", None, 10, 0), ("b", "int", None, 10, 0), ("c", "nvarchar", 10, None, None))
    same, sent = _loaded(table)
    assert same is table and sent([(1, 2, "x")]) == [(1, 2, "x")]
    table.columns[1] = replace(table.columns[1], generated="a * 2")
    loaded, sent = _loaded(table)
    assert [c.name for c in loaded.columns] == ["a", "c"] and sent([(1, 2, "x"), (3, 6, None)]) == [(1, "x"), (3, None)]
