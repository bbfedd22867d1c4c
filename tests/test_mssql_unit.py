"""The SQL Server code that needs no server: its SQL parses as T-SQL, its partition reads and
DDL are what they should be, and real pymssql connection failures become one-line errors.

These are not tests of SQL Server behaviour: tests/test_mssql_integration.py runs the same code
against a real server when SO_TEST_MSSQL_URL is set."""
import re

import pytest
import sqlglot

from so_luigi import planning, sample
from so_luigi.config import Endpoint, parse_url
from so_luigi.dialects import mssql
from so_luigi.dialects.base import mssql_ident
from so_luigi.dialects.postgres import sql
from so_luigi.embedded import free_port
from so_luigi.errors import ConnectError, TransientError

CATALOG = ["mssql_tables.sql", "mssql_columns.sql", "mssql_primary_key.sql", "mssql_indexes.sql"]


def tsql(text):
    return sqlglot.parse_one(re.sub(r"%\(\w+\)s|%s", "N'x'", text), read="tsql")


@pytest.mark.parametrize("name", CATALOG)
def test_catalog_queries_parse_as_tsql(name):
    assert tsql(sql(name)) is not None


def test_catalog_takes_names_from_information_schema_and_joins_sys_by_id():
    columns = sql("mssql_columns.sql")
    assert "INFORMATION_SCHEMA.COLUMNS" in columns and "sc.object_id = OBJECT_ID(" in columns
    indexes = sql("mssql_indexes.sql")
    assert "ic.object_id = i.object_id" in indexes and "col.column_id = ic.column_id" in indexes


def test_partition_select_and_boundaries():
    table = sample.table_def("Votes")
    query, params = mssql.select_sql(table, 100, 200)
    assert query == ("SELECT [Id], [PostId], [UserId], [BountyAmount], [VoteTypeId], [CreationDate] "
                     "FROM [dbo].[Votes] WHERE [Id] > %s AND [Id] <= %s")
    assert params == (100, 200)
    tsql(query)
    whole, none = mssql.select_sql(table, None, None)
    assert none is None and whole.endswith("FROM [dbo].[Votes]")
    # pymssql reads every '%' of a query that has parameters as a placeholder's start
    table.name = "100% off"
    assert mssql.select_sql(table, 1, None)[0].endswith("FROM [dbo].[100%% off] WHERE [Id] > %s")
    assert mssql.select_sql(table, None, None)[0].endswith("FROM [dbo].[100% off]")
    bounds = planning.boundaries_sql(mssql_ident, "[dbo].[Votes]", "Id", 500000)
    assert "%" not in bounds
    tsql(bounds)


def test_identifiers_with_brackets_are_quoted():
    assert mssql_ident("we]ird") == "[we]]ird]"
    assert mssql.qualified("dbo", "Post History") == "[dbo].[Post History]"


def test_sample_ddl_parses_as_tsql():
    for name in sample.SCHEMA:
        tsql(sample.mssql_create_sql(sample.table_def(name)))


def _ep(url):
    return Endpoint(parse_url(url), "dbo", "source")


def test_refused_port_is_a_transient_one_line_error():
    ep = _ep(f"mssql://sa:s3cret@127.0.0.1:{free_port()}/StackOverflow2010")
    with pytest.raises(TransientError) as info:
        mssql.connect(ep)
    text = str(info.value)
    assert "no SQL Server answers at 127.0.0.1" in text and "\n" not in text and "s3cret" not in text


def test_unknown_host_is_named():
    with pytest.raises(ConnectError, match="unknown host 'no-such-host.invalid'"):
        mssql.connect(_ep("mssql://sa:s3cret@no-such-host.invalid:1433/StackOverflow2010"))


def test_login_failed_message_from_dblib_is_made_one_line():
    import pymssql
    exc = pymssql.OperationalError((18456, b"Login failed for user 'sa'.DB-Lib error message 20018, severity 14:\n"
                                           b"General SQL Server error: Check messages from the SQL Server\n"
                                           b"DB-Lib error message 20002, severity 9:\nAdaptive Server connection failed\n"))
    err = mssql.connect_error(exc, _ep("mssql://sa:pw@db.example:1433/so"))
    assert isinstance(err, ConnectError) and "login failed for user 'sa'" in str(err)


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
    assert mssql.table_bytes(_Answers((8192 * 10,)), table) == 81920
    denied = Exception("VIEW DATABASE STATE permission denied in database 'StackOverflow2010'.")
    conn = _Answers(denied, ("Posts", "3729195   ", "2550000 KB", "2490184 KB", "8800 KB", "51016 KB"))
    assert mssql.table_bytes(conn, table) == 2490184 * 1024
    assert sqlglot.parse_one(conn.sent[1].replace("%s", "'x'"), read="tsql") is not None
    assert mssql.table_bytes(_Answers(denied, denied), table) is None
    assert mssql.table_bytes(_Answers((None,), None), table) is None
