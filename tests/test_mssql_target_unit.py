"""SQL Server as destination, the parts that need no server: values as pymssql's bulk copy must
receive them, the empty-string path, the cross-database checksum, and every marker statement
parsing as T-SQL.

Not tests of SQL Server: tests/test_mssql_integration.py runs the destination end to end when
SO_TEST_MSSQL_URL is set."""
import contextlib
import datetime as dt
import re
import uuid
from decimal import Decimal

import psycopg2
import pytest
import sqlglot

from so_luigi.state import markers
from so_luigi.config import Endpoint, parse_url
from so_luigi.dialects.mssql import connection as ms_connection
from so_luigi.dialects.mssql import bulk as ms_bulk, ddl as ms_ddl, types as ms_types
from so_luigi.dialects.mssql import checksum as ms_checksum, destination as ms_destination, state as ms_state
from so_luigi.dialects.base import Column, Table
from so_luigi.errors import SchemaError
from so_luigi.testing import sample


def pymssql_error(name, args):
    import pymssql
    return getattr(pymssql, name)(args)


def tsql(text):
    return sqlglot.parse_one(re.sub(r"%\(\w+\)s|%s", "N'x'", text), read="tsql")


def test_values_pymssql_bulk_copy_would_cut_or_refuse_go_as_text():
    tz = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    assert ms_bulk.bulk_value(dt.datetime(2010, 1, 2, 3, 4, 5, 123456)) == "2010-01-02 03:04:05.123456"
    assert ms_bulk.bulk_value(dt.datetime(1, 1, 1)) == "0001-01-01 00:00:00.000000"       # four-digit years
    assert ms_bulk.bulk_value(Decimal("0E-10")) == "0.0000000000" and ms_bulk.bulk_value(Decimal("1E+2")) == "100"
    assert ms_bulk.bulk_value(dt.datetime(2010, 1, 2, 3, 4, 5, 7, tzinfo=tz)) == "2010-01-02 03:04:05.000007 -05:30"
    assert ms_bulk.bulk_value(dt.date(1, 1, 1)) == "0001-01-01"
    assert ms_bulk.bulk_value(dt.time(23, 59, 59, 999999)) == "23:59:59.999999"
    assert ms_bulk.bulk_value(dt.time(1, 2)) == "01:02:00.000000"
    assert ms_bulk.bulk_value(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert ms_bulk.bulk_value(Decimal("922337203685477.5807")) == "922337203685477.5807"
    assert ms_bulk.bulk_value(memoryview(b"\x00\xff")) == b"\x00\xff"
    for kept in (1, 2**40, True, 1.5, "text", b"\x01"):
        assert ms_bulk.bulk_value(kept) is kept


def _carriers(*finals):
    return [ms_bulk.carrier(f) for f in finals]


def test_a_null_in_a_column_with_a_default_goes_by_the_side_table_which_keeps_it():
    """The bulk copy would put the column's DEFAULT in its place."""
    table = Table("dbo", "D", [Column("id", "int", nullable=False), Column("n", "int", default="((7))"),
                               Column("s", "nvarchar", length=5)], dialect="mssql")
    carriers = [c for _, _, c in ms_bulk.bulk_columns(table, "mssql")]
    direct, side = ms_bulk.bulk_rows([(1, 5, None), (2, None, "x")], carriers)
    assert direct == [(1, 5, None)]
    assert side == [(2, None, "x", "000")]


def test_rows_with_empty_strings_take_the_masked_path_and_keep_their_empties():
    rows = [(1, "a", b"x", None), (2, "", b"x", None), (3, "b", b"", ""), (4, None, None, None)]
    direct, masked = ms_bulk.bulk_rows(rows, _carriers("int", "nvarchar(10)", "varbinary(10)", "nvarchar(max)"))
    assert direct == [(1, "a", b"x", None), (4, None, None, None)]
    assert masked == [(2, None, b"x", None, "0100"), (3, "b", None, None, "0011")]


def test_values_freetds_would_convert_wrongly_take_the_side_table_as_text():
    """Each a value the bulk copy stored wrongly or refused on the TDS server, next to one of the
    same column that goes straight in."""
    utc = dt.timezone.utc
    cases = [
        ("date", dt.date(1753, 1, 1), "1753-01-01", dt.date(1, 1, 1), "0001-01-01"),
        ("datetime2(7)", dt.datetime(2010, 1, 2, 3, 4, 5, 6), "2010-01-02 03:04:05.000006",
         "1700-06-15 01:02:03.1234567", "1700-06-15 01:02:03.1234567"),
        ("datetimeoffset(7)", dt.datetime(2010, 1, 1, 12, tzinfo=utc), "2010-01-01 12:00:00.000000",
         dt.datetime(2010, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
         "2010-01-01 12:00:00.000000 +05:30"),
        ("datetimeoffset(7)", "2010-01-01 12:00:00.1234567 +00:00", "2010-01-01 12:00:00.1234567",
         "2010-01-01 12:00:00.1234567 -03:00", "2010-01-01 12:00:00.1234567 -03:00"),
        ("varchar(20)", "plain ascii", "plain ascii", "naïve", "naïve"),
        ("varchar(20)", "  leading", "  leading", "Brian ", "Brian "),        # FreeTDS trims trailing blanks
        ("nvarchar(max)", " both", " both", "C and C++ Game Programmer. ", "C and C++ Game Programmer. "),
        ("nvarchar(5)", "a\tb", "a\tb", " ", " "),
        ("char(5)", "ab   ", "ab   ", "é", "é"),
        ("nchar(3)", " b ", " b ", "   ", "   "),                               # blanks only
        ("smallmoney", Decimal("214748.3647"), "214748.3647", Decimal("-1.5"), "-1.5"),
        ("xml", None, None, "<r/>", "<r/>"),
        # more than 28 digits: the bulk copy once appended the last digit again (integration test
        # test_every_year_offset_and_precision_arrives_as_it_was, decimal(38,*))
        ("decimal(38,10)", Decimal("-123456789012345678.9012345678"), "-123456789012345678.9012345678",
         Decimal("1234567890123456789012345678.9012345678"), "1234567890123456789012345678.9012345678"),
        ("decimal(38,0)", Decimal("1" * 28), "1" * 28, Decimal("1" * 29), "1" * 29),
    ]
    for final, straight, sent, odd, as_text in cases:
        carriers = _carriers("int", final)
        direct, side = ms_bulk.bulk_rows([(1, straight), (2, odd)], carriers)
        assert direct == [(1, sent)], final
        # a value ending in blanks goes with a mark after them (the side table is bulk copied too)
        mark = "02" if as_text.endswith(" ") else "00"
        assert side == [(2, as_text + ("|" if mark == "02" else ""), mark)], final
    assert ms_bulk.bulk_rows([(1, "x", "naïve 日本語")], _carriers("int", "nvarchar(5)", "nvarchar(max)"))[1] == []
    # the side table holds such a decimal as text, which its INSERT casts; a narrower one as itself
    assert [ms_bulk.load_type(t) for t in ("decimal(38,10)", "numeric(29,0)", "decimal(28,2)")] == \
        ["varchar(50)", "varchar(50)", "decimal(28,2)"]
    assert ms_bulk.side_casts([("decimal(38,10)", "varchar(50)", None)]) == ["decimal(38,10)"]


@pytest.mark.parametrize("read,sent", [
    (dt.datetime(2010, 1, 1, 0, 0, 0, 79999), "2010-01-01 00:00:00.080"),     # how a driver returns .080
    (dt.datetime(2010, 1, 1, 0, 0, 0, 3333), "2010-01-01 00:00:00.003"),
    (dt.datetime(2010, 1, 1, 0, 0, 0, 6667), "2010-01-01 00:00:00.007"),
    (dt.datetime(2010, 1, 1, 23, 59, 59, 998333), "2010-01-01 23:59:59.997"),
    (dt.datetime(2010, 12, 31, 23, 59, 59, 999000), "2011-01-01 00:00:00.000"),
    (dt.datetime(1753, 1, 1), "1753-01-01 00:00:00.000"),
])
def test_datetime_goes_as_its_nearest_tick_in_sql_servers_milliseconds(read, sent):
    """FreeTDS truncates to the 1/300 s tick below (seen: .079999 landed as .077)."""
    assert ms_bulk.bulk_rows([(read,)], _carriers("datetime"))[0] == [(sent,)]


class BulkRecorder:
    """Stands in for a pymssql connection: keeps what bulk_copy was given and the SQL run."""

    def __init__(self):
        self.copies, self.cur = [], Recorder()

    def bulk_copy(self, table, rows, batch_size, tablock):
        self.copies.append((table, list(rows), batch_size, tablock))

    def cursor(self):
        return self.cur


def test_bulk_load_streams_plain_rows_and_routes_empty_ones_through_the_masked_table():
    table = _table()
    conn = BulkRecorder()
    seen = []
    batches = iter([[(1, "a", b"x", None), (2, "", None, None)], [(3, "c", b"", dt.datetime(2010, 1, 1))]])
    n = ms_bulk.bulk_load(conn, "dbo", table, ms_bulk.bulk_columns(table, "mssql"), batches, 500, on_batch=seen.append)
    assert n == 3 and [len(b) for b in seen] == [2, 1]
    assert conn.copies[0] == ("[dbo].[Odd]]Name]", [(1, "a", b"x", None)], 500, True)
    assert conn.copies[1] == ("#so_luigi_empties", [(2, None, None, None, "0100"),
                                                    (3, "c", None, "2010-01-01 00:00:00.000000", "0010")], 500, True)
    assert conn.cur.sql[:2] == ["SET IDENTITY_INSERT [dbo].[Odd]]Name] ON", "SET IDENTITY_INSERT [dbo].[Odd]]Name] OFF"]
    assert conn.cur.sql[2].startswith("CREATE TABLE #so_luigi_empties ([Id] int NULL, [Body] nvarchar(max) NULL")
    assert conn.cur.sql[3:] == [ms_bulk.unmask_sql("dbo", table), "DROP TABLE #so_luigi_empties"]


def test_bulk_load_with_a_side_table_leaves_empty_rows_there_with_their_partition():
    conn = BulkRecorder()
    ms_bulk.bulk_load(conn, "dbo", _table(), ms_bulk.bulk_columns(_table(), "mssql"),
                    iter([[(1, "", None, None), (2, "b", None, None)]]), 500, side=("[so_luigi].[empties_T]", (7,)))
    assert [c[:2] for c in conn.copies] == [("[dbo].[Odd]]Name]", [(2, "b", None, None)]),
                                            ("[so_luigi].[empties_T]", [(1, None, None, None, "0100", 7)])]
    assert not any(s.startswith(("INSERT", "CREATE")) for s in conn.cur.sql)   # applied once, before verification


def _computing():
    """SQL Server into SQL Server: Twice re-created as computed (Destination.carry set it)."""
    return Table(schema="dbo", name="P", dialect="mssql", primary_key=["Id"], columns=[
        Column("Id", "int", nullable=False, source_type="int"),
        Column("Twice", "int", computed="([Id]*(2))", generated="([Id]*(2))", persisted=True, nullable=False),
        Column("Name", "nvarchar", length=10, source_type="nvarchar(10)"),
        Column("Half", "int", computed="([Id]/(2))", generated="([Id]/(2))")])


def test_computed_columns_are_read_but_not_sent_the_bulk_copy_names_the_others():
    """The source's rows hold every column (their checksum covers them); the server computes
    Twice and Half, so every row goes by the side table, which holds only Id and Name, and its
    INSERT names those two."""
    table, conn, seen = _computing(), BulkRecorder(), []
    n = ms_bulk.bulk_load(conn, "dbo", table, ms_bulk.bulk_columns(table, "mssql"),
                          iter([[(1, 2, "a", 0), (2, 4, "", 1)]]), 500, on_batch=seen.append)
    assert n == 2 and seen == [[(1, 2, "a", 0), (2, 4, "", 1)]]
    assert conn.copies == [("#so_luigi_empties", [(1, "a", "00"), (2, None, "01")], 500, True)]
    assert conn.cur.sql[0] == "CREATE TABLE #so_luigi_empties ([Id] int NULL, [Name] nvarchar(max) NULL, so_luigi_mask varchar(max) NOT NULL)"
    assert conn.cur.sql[1].startswith("INSERT INTO [dbo].[P] WITH (TABLOCK) ([Id], [Name]) SELECT [Id], CASE")
    create = ms_ddl.create_table_sql("dbo", table, "mssql")
    assert "[Twice] AS (([Id]*(2))) PERSISTED NOT NULL" in create and "[Half] AS (([Id]/(2)))," not in create
    assert create.rstrip().endswith("[Half] AS (([Id]/(2)))\n)")
    tsql(create)


def test_a_sparse_column_stays_sparse_into_sql_server():
    table = Table("dbo", "S", [Column("Id", "int", nullable=False, source_type="int"),
                               Column("Color", "nvarchar", length=20, source_type="nvarchar(20)", sparse=True)],
                  dialect="mssql")
    create = ms_ddl.create_table_sql("dbo", table, "mssql")
    assert "[Color] nvarchar(20) SPARSE NULL" in create and "[Id] int NOT NULL" in create   # (sqlglot has no SPARSE)


@pytest.mark.parametrize("definition,why", [
    ("([Id]*(2))", None),
    ("([Node].[GetLevel]())", None),                 # a method of the column's own type
    ("([dbo].[ufnTag]([Id]))", "it calls dbo.ufnTag(), a function so_luigi does not carry"),
    ("(id * 2)::integer", "the source's catalog prints it in PostgreSQL's words, not T-SQL"),
])
def test_a_computed_column_is_re_created_unless_it_needs_what_is_not_carried(definition, why):
    table = Table("dbo", "P", [Column("Id", "int"), Column("Node", "hierarchyid"), Column("C", "int", computed=definition)],
                  dialect="mssql")
    table.not_carried.append(["computation of C (AS x)", "a plain column"])
    ms_destination.MssqlDestination.carry(None, table)
    assert ms_destination.computed_refused(table.columns[2], table) == why
    assert table.columns[2].generated == ("" if why else definition)
    assert [n[0] for n in table.not_carried] == (["computation of C (AS x)"] if why else [])
    if why:
        assert table.not_carried[0][1] == f"a plain column holding the source's values: not re-created, {why}"


def test_bulk_load_of_nothing_starts_no_bulk_copy():
    conn = BulkRecorder()
    assert ms_bulk.bulk_load(conn, "dbo", _table(), ms_bulk.bulk_columns(_table(), "mssql"), iter([]), 500) == 0
    assert conn.copies == [] and not any("CREATE" in s for s in conn.cur.sql)


def _table():
    return Table(schema="dbo", name="Odd]Name", dialect="mssql", primary_key=["Id"], columns=[
        Column("Id", "int", nullable=False, identity=True, source_type="int"),
        Column("Body", "nvarchar", nullable=False, length=-1, source_type="nvarchar(max)"),
        Column("Blob", "varbinary", length=10, source_type="varbinary(10)"),
        Column("When", "datetime", source_type="datetime")])


def test_unmask_puts_empty_strings_back_in_one_insert_select():
    sql = ms_bulk.unmask_sql("dbo", _table())
    assert sql.startswith("SET IDENTITY_INSERT [dbo].[Odd]]Name] ON; INSERT INTO [dbo].[Odd]]Name] WITH (TABLOCK)")
    assert ("CASE WHEN SUBSTRING(so_luigi_mask, 2, 1) = '1' THEN N'' WHEN SUBSTRING(so_luigi_mask, 2, 1) = '2' "
            "THEN LEFT([Body], LEN([Body]) - 1) ELSE [Body] END") in sql
    assert "CASE WHEN SUBSTRING(so_luigi_mask, 3, 1) = '1' THEN 0x ELSE [Blob] END" in sql
    assert ", [When] FROM #so_luigi_empties" in sql        # not a text column: never masked
    for statement in sql.split("; "):
        tsql(statement.replace(" WITH (TABLOCK)", ""))      # sqlglot does not know INSERT's table hints
    table = _table()
    staging = ms_bulk.staging_table_sql(table, [ms_types.column_type(c, "mssql") for c in table.columns])
    tsql(staging)
    assert "IDENTITY" not in staging and "NOT NULL" not in staging.replace("so_luigi_mask varchar(max) NOT NULL", "")


def test_cross_database_checksum_agrees_across_driver_types():
    """What psycopg2 returns from PostgreSQL and pymssql from SQL Server for the same row sums the same."""
    table = Table(schema="s", name="t", columns=[
        Column("b", "boolean"), Column("r", "real"), Column("ts", "timestamp with time zone"),
        Column("u", "uuid"), Column("by", "bytea"), Column("n", "numeric")])
    enc = ms_checksum.canonical_encoders(table)
    pg_row = (True, 0.1, dt.datetime(2020, 1, 1, 12, tzinfo=dt.timezone.utc), "0000000000000000000000000000000a",
              memoryview(b"\x01"), Decimal("1.50"))
    ms_row = (True, 0.10000000149011612, dt.datetime(2020, 1, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2))),
              uuid.UUID(int=10).hex, b"\x01", Decimal("1.50"))
    assert ms_checksum.rows_checksum([pg_row], enc) == ms_checksum.rows_checksum([ms_row], enc)
    changed = ms_row[:5] + (Decimal("1.51"),)
    assert ms_checksum.rows_checksum([pg_row], enc) != ms_checksum.rows_checksum([changed], enc)
    assert ms_checksum.rows_checksum([pg_row, ms_row], enc) == ms_checksum.rows_checksum([ms_row, pg_row], enc)


def test_batches_stay_within_a_quarter_of_the_buffer():
    assert ms_destination.batch_rows_for(64 << 20, 1_000, 1_000 * 4_000) == 4194
    assert ms_destination.batch_rows_for(64 << 20, 10, 100) == 100_000
    assert ms_destination.batch_rows_for(1 << 20, 10, 10 * 100_000) == 100


def test_seven_digit_time_types_are_read_as_text_from_sql_server():
    table = _table()
    table.columns.append(Column("T7", "datetime2", precision=7, source_type="datetime2(7)"))
    from so_luigi.dialects.mssql.source import MssqlSource
    executed = []

    class Cursor:
        def execute(self, sql, params=()):
            executed.append((sql, params))

        def fetchmany(self, n):
            return []

    class Session:
        def cursor(self):
            return Cursor()
    src = MssqlSource(Endpoint(parse_url("mssql://u:p@h:1433/db", "source"), "dbo", "source"))
    src.session = lambda: contextlib.nullcontext(Session())
    assert list(src.batches(table, 5, None, 100)) == []
    [(sql, params)] = executed
    assert "CONVERT(varchar(40), [T7], 121)" in sql and "[When]," in sql and params == (5,)
    tsql(sql)


class Recorder:
    """A cursor that keeps the SQL it is given (marker code run without a database)."""

    rowcount = 1

    def __init__(self):
        self.sql = []

    def execute(self, sql, params=None):
        self.sql.append(sql)

    def executemany(self, sql, seq):
        self.sql.append(sql)

    def fetchone(self):
        return (0, 0, 0, None)

    def fetchall(self):
        return []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class RecorderConn:
    def __init__(self):
        self.cur = Recorder()

    def cursor(self):
        return self.cur

    def commit(self):
        pass


def test_every_marker_statement_parses_as_tsql(monkeypatch):
    monkeypatch.setenv("SO_TARGET_URL", "mssql://sa:pw@db:1433/so")
    conn = RecorderConn()
    cur = conn.cur
    markers.ensure_schema(conn)
    markers.lock(cur, "run", "Posts", 3)
    markers.is_planned(cur, "run", "Posts")
    markers.store_plan(cur, "run", sample.table_def("Posts"), [(None, 5), (5, None)], 9, 5, 1000)
    markers.partition_weights(conn, "run", "Posts")
    markers.is_loaded(cur, "run", "Posts", 0)
    markers.insert_loaded(cur, "run", "Posts", 0, 5, 100, 1.0, None, "bulk-copy")
    markers.loaded_totals(cur, "run", "Posts")
    markers.is_complete(cur, "run", "Posts")
    markers.mark_complete(cur, "run", "Posts", 9, 100, 1, 1, "ok")
    markers.mark_replicated(conn, "run", "*")
    markers.report_rows(conn, "run")
    markers.reset(conn, "run", ["Posts", "Votes"])
    monkeypatch.setattr(ms_destination.MssqlDestination, "session", lambda self: contextlib.nullcontext(conn))
    assert markers.count_attempt("run", "Posts", 0) == -1          # the recorder's row says 0 attempts
    markers.record_reading(conn, "run", "snap", "consistent")
    markers.mark_seen(cur, "run")
    markers.holder_view(cur, "run", "snap")
    markers.is_replicated(cur, "run")
    markers.next_generation(cur, "run")
    markers.planned_names(cur, "run")
    markers.planned_size(cur, "run", "Posts")
    markers.status_rows(cur, "run")
    for _, query in markers.EXISTS.values():
        cur.sql.append(query.format(m=markers.m()))
    cur.sql.append(ms_state.exists_sql)
    f = markers.flavor()
    cur.sql.append(markers.STATUS_SQL.format(m=markers.m(), elapsed=f.seconds_since(f.load_started)))
    statements = [s for text in cur.sql for s in text.split("; ") if s.strip()]
    assert len(statements) > 20
    for statement in statements:
        assert "::" not in statement and "ON CONFLICT" not in statement and "clock_timestamp" not in statement
        tsql(statement)
    assert any("sp_getapplock" in s for s in statements)
    assert any(s.startswith("IF OBJECT_ID(N'[so_luigi].[loaded]', N'U') IS NULL CREATE TABLE") for s in statements)
    assert any(s.startswith("IF COL_LENGTH(N'[so_luigi].[runs]', N'seen_at') IS NULL ALTER TABLE") for s in statements)


def test_marker_sql_shared_with_sql_server_still_runs_on_postgresql(pair):
    """The portable rewrites (count instead of NOT EXISTS, CASE, IN lists) on the real PostgreSQL."""
    conn = psycopg2.connect(pair.target_url)
    try:
        markers.ensure_schema(conn)
        with conn.cursor() as cur:
            markers.store_plan(cur, "r", sample.table_def("Votes"), [(None, 5), (5, None)], 9, 5, 9_000_000)
            assert markers.insert_loaded(cur, "r", "Votes", 0, 5, 10, 0.5, None, "stream") is True
            assert markers.insert_loaded(cur, "r", "Votes", 1, 4, 10, 0.5, None, "stream") is False
        conn.commit()
        assert markers.partition_weights(conn, "r", "Votes") == [5, 4]
        markers.mark_replicated(conn, "r", "*")
        markers.mark_replicated(conn, "r", "*")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM so_luigi.replications")
            assert cur.fetchone()[0] == 1
        assert [r[7] for r in markers.report_rows(conn, "r")] == [0]
        markers.reset(conn, "r", ["Votes", "Posts"])
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM so_luigi.loaded")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


@pytest.mark.parametrize("url", ["mssql://sa:pw@db:1433/so"])
def test_bulk_mode_into_sql_server_is_refused_in_one_line(pair, url):
    result = pair.run("--mode", "bulk", env=pair.env(SO_TARGET_URL=url))
    assert result.returncode != 0
    assert "--mode bulk stages files for PostgreSQL's COPY; into SQL Server use --mode streaming" in result.stderr


@pytest.mark.parametrize("exc,kind", [
    (pymssql_error("OperationalError", (1205, b"Transaction (Process ID 52) was deadlocked")), "TransientError"),
    (pymssql_error("OperationalError", (20047, b"DB-Lib error message 20047, severity 9:\nDBPROCESS is dead")),
     "TransientError"),
    (pymssql_error("OperationalError", (8152, b"String or binary data would be truncated.")), "SoLuigiError"),
    (pymssql_error("OperationalError", (229, b"The INSERT permission was denied on the object 'Posts'")),
     "SchemaError"),
    (pymssql_error("InterfaceError", "Connection is closed."), "TransientError"),
    (pymssql_error("InterfaceError", "Unable to convert value dbtype=36"), "SoLuigiError"),
])
def test_pymssql_errors_are_retried_only_when_transient(exc, kind):
    """pymssql raises OperationalError for nearly every server error: the number decides."""
    err = ms_connection.translate(exc, "target")
    assert type(err).__name__ == kind
    assert str(err).startswith("target SQL Server: ") and "\n" not in str(err)


def test_side_table_and_prepare_statements(monkeypatch):
    monkeypatch.setenv("SO_TARGET_URL", "mssql://sa:pw@db:1433/so")
    table = _table()
    table.columns.append(Column("Day", "date", source_type="date"))
    side = ms_destination.side_table(table.name)
    assert side == "[so_luigi].[empties_Odd]]Name]"
    assert ms_destination.side_table("x" * 128).startswith("[so_luigi].[empties_") and len(side) < 140
    created = ms_bulk.staging_table_sql(table, [load for _, load, _ in ms_bulk.bulk_columns(table, "mssql")], side,
                                      ms_destination.SIDE_EXTRA)
    assert created.endswith("[Day] varchar(40) NULL, so_luigi_mask varchar(max) NOT NULL, "
                            "[so_luigi_partition] int NOT NULL)")
    tsql(created)
    conn = RecorderConn()
    table.dialect = "mssql"
    ms_destination.MssqlDestination(Endpoint(parse_url("mssql://sa:pw@db:1433/so", "target"), "dbo", "target")).prepare(
        conn, table)                                          # the recorder says the side table exists
    applied = conn.cur.sql[1:]
    assert applied == [ms_bulk.unmask_sql("dbo", table, side, [None] * 4 + ["date"]), f"DROP TABLE {side}"]
    assert ", CAST([Day] AS date) FROM [so_luigi]" in applied[0]          # converted on the way in, no ALTER
    for statement in applied[0].split("; "):
        tsql(statement.replace(" WITH (TABLOCK)", ""))


def test_sql_variant_hierarchyid_and_spatial_go_by_the_side_table_and_are_made_again_from_their_text():
    """Read as text (catalog.read_sql), every such value goes by the side table; its INSERT makes
    the value again: a sql_variant as its own base type, from a CASE over the types present."""
    table = Table("dbo", "V", [Column("Id", "int", nullable=False), Column("v", "sql_variant"),
                               Column("node", "hierarchyid"), Column("shape", "geography")], dialect="mssql")
    columns = ms_bulk.bulk_columns(table, "mssql")
    assert [load for _, load, _ in columns] == ["int"] + ["nvarchar(max)"] * 3
    direct, side = ms_bulk.bulk_rows([(1, "int\x1f5", "/1/", "SRID=4326;POINT (1 2)"), (2, None, None, None)],
                                     [c for _, _, c in columns])
    assert direct == [(2, None, None, None)] and side == [(1, "int\x1f5", "/1/", "SRID=4326;POINT (1 2)", "0000")]
    casts = ms_bulk.side_casts(columns)
    assert casts == [None, "sql_variant", "hierarchyid", "geography"]
    sql = ms_bulk.unmask_sql("dbo", table, "[so_luigi].[empties_V]", casts, {"v": ["decimal(5,2)", "nvarchar(3)"]})
    assert "WHEN N'decimal(5,2)' THEN CAST(CAST(SUBSTRING(" in sql and "AS decimal(5,2)) AS sql_variant)" in sql
    assert "WHEN N'nvarchar(3)' THEN CAST(CAST(" in sql and "geography::STGeomFromText(SUBSTRING(" in sql
    assert "AS hierarchyid)" in sql
    assert ms_bulk.from_text("sql_variant", "x") == "CAST(NULL AS sql_variant)"    # only NULLs held


def test_a_sql_variant_base_type_so_luigi_cannot_make_again_stops_naming_it():
    table = Table("dbo", "V", [Column("Id", "int"), Column("v", "sql_variant")], dialect="mssql")

    class Cur(Recorder):
        def fetchall(self):
            return [("int",), ("geometry",)]
    with pytest.raises(SchemaError, match=r"dbo\.V\.v holds a sql_variant of base type geometry"):
        ms_bulk.variant_kinds(Cur(), "#side", table)
    assert ms_bulk.VARIANT_KIND.fullmatch("datetimeoffset(7)") and not ms_bulk.VARIANT_KIND.fullmatch("int; DROP")


def test_payload_bytes_counts_text_and_bytes_as_a_value_at_a_time_would():
    from so_luigi.dialects.mssql.destination import payload_bytes

    class Named(str):
        pass
    rows = [(1, "héllo", b"\x00\x01", None, 2.5, Named("ab"), "x" if i % 2 else 3) for i in range(7)]
    rows.append((None, None, None, None, None, None, None))
    assert payload_bytes(rows) == sum(len(v) for r in rows for v in r if isinstance(v, (str, bytes))) == 7 * 9 + 3
    assert payload_bytes([]) == 0
