"""SQL Server source, end to end, against a real server: runs only when SO_TEST_MSSQL_URL is set.

    SO_TEST_MSSQL_URL=mssql://sa:<password>@localhost:1433/master scripts/test.sh tests/test_mssql_integration.py

The login must be allowed to create a database; each test creates its own and drops it after.
Rows are compared value by value as each driver returns them (pymssql vs psycopg2), which does
not go through so_luigi's encoder.
"""
import os
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from so_luigi import sample
from so_luigi.config import Endpoint, parse_url

URL = os.environ.get("SO_TEST_MSSQL_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="SQL Server integration suite: set SO_TEST_MSSQL_URL "
                                                "(mssql://user:password@host:port/master) to run it")

ALL_TYPES = """
CREATE TABLE [dbo].[AllTypes] (
    [Id] int IDENTITY(1,1) NOT NULL CONSTRAINT [PK_AllTypes__Id] PRIMARY KEY,
    [b] bit NULL, [ti] tinyint NULL, [si] smallint NULL, [i] int NOT NULL, [bi] bigint NULL,
    [d] decimal(38,10) NULL, [n] numeric(9,2) NULL, [m] money NULL, [sm] smallmoney NULL,
    [f] float NULL, [r] real NULL, [dt] date NULL, [t] time(7) NULL, [tm] time(3) NULL,
    [dtm] datetime NULL, [dt2] datetime2(7) NULL, [sdt] smalldatetime NULL, [dto] datetimeoffset(7) NULL,
    [c] char(5) NULL, [nc] nchar(5) NULL, [vc] varchar(50) NULL, [nvc] nvarchar(40) NULL,
    [vcm] varchar(max) NULL, [nvcm] nvarchar(max) NULL, [tx] text NULL, [ntx] ntext NULL,
    [bn] binary(4) NULL, [vb] varbinary(10) NULL, [vbm] varbinary(max) NULL, [img] image NULL,
    [u] uniqueidentifier NULL, [x] xml NULL, [rv] rowversion NOT NULL)
"""
ALL_TYPES_ROWS = """
INSERT INTO [dbo].[AllTypes] ([b],[ti],[si],[i],[bi],[d],[n],[m],[sm],[f],[r],[dt],[t],[tm],[dtm],[dt2],[sdt],[dto],
  [c],[nc],[vc],[nvc],[vcm],[nvcm],[tx],[ntx],[bn],[vb],[vbm],[img],[u],[x]) VALUES
 (1, 255, -32768, -2147483648, 9223372036854775807, 1234567890123456789012345678.0123456789, -1234567.89,
  922337203685477.5807, -214748.3648, 1.7976931348623157E+308, 3.4028234E+38, '0001-01-01', '23:59:59.9999999',
  '12:34:56.789', '1753-01-01T00:00:00.000', '9999-12-31T23:59:59.9999999', '2079-06-06T23:59:00',
  '2010-01-01T12:00:00.1234567+05:30', 'ab', N'ÄÖ', '', N'', 'x', N'naïve 日本語 😀 tab	nl
  cr' + CHAR(13) + N' bs\\ \\N', 'text', N'ntext ü', 0x00FF10AB, 0x, 0x0102, 0xFFFF,
  '6F9619FF-8B86-D011-B42D-00C04FC964FF', N'<a b="1">x &amp; y</a>'),
 (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '9999-12-31', '00:00:00', '00:00:00', '9999-12-31T23:59:59.997',
  '0001-01-01T00:00:00', '1900-01-01T00:00:00', '0001-01-01T00:00:00+00:00', '     ', N' ', ' ', N' ', '', N'',
  '', N'', 0x00000000, 0x00, 0x, 0x, '00000000-0000-0000-0000-000000000000', N'<r/>'),
 (NULL, NULL, NULL, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"""


@pytest.fixture
def mssql_source(pair):
    import pymssql
    base = parse_url(URL)
    name = f"so_test_{uuid.uuid4().hex[:8]}"
    admin = pymssql.connect(server=base.host, port=str(base.port or 1433), user=base.user, password=base.password,
                            database=base.database, autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE [{name}]")
    url = URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url, Endpoint(parse_url(url), "dbo", "source")
    finally:
        cur = admin.cursor()
        cur.execute(f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
        cur.execute(f"DROP DATABASE [{name}]")
        admin.close()


def source_rows(url, table, columns):
    import pymssql
    p = parse_url(url)
    conn = pymssql.connect(server=p.host, port=str(p.port or 1433), user=p.user, password=p.password,
                           database=p.database)
    cur = conn.cursor()
    cur.execute(f"SELECT {', '.join('[' + c + ']' for c in columns)} FROM [dbo].[{table}] ORDER BY [Id]")
    rows = cur.fetchall()
    conn.close()
    return rows


def normalise(value):
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    if isinstance(value, datetime) and value.microsecond % 1000:
        # the sample's datetime columns hold 1/300 s ticks, stored as milliseconds
        return value.replace(microsecond=0) + timedelta(microseconds=round(value.microsecond, -3))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def test_sample_from_sql_server_replicates_exactly(pair, mssql_source):
    url, ep = mssql_source
    sample.fill_mssql(ep, scale=0.002, log=lambda *a: None)
    result = pair.run("--workers", "2", "--chunk-rows", "3000", env=pair.env(SO_SOURCE_URL=url))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok: count+checksum") == len(sample.table_names())
    for name in sample.table_names():
        cols = [c.name for c in sample.table_def(name).columns]
        quoted = ", ".join(f'"{c}"' for c in cols)
        dst = pair.query("target", f'SELECT {quoted} FROM "{name}" ORDER BY "Id"')
        src = source_rows(url, name, cols)
        assert [tuple(map(normalise, r)) for r in src] == [tuple(map(normalise, r)) for r in dst], name


def test_every_type_from_sql_server(pair, mssql_source):
    import pymssql
    url, ep = mssql_source
    p = ep.url
    conn = pymssql.connect(server=p.host, port=str(p.port or 1433), user=p.user, password=p.password,
                           database=p.database, autocommit=True)
    conn.cursor().execute(ALL_TYPES)
    conn.cursor().execute(ALL_TYPES_ROWS)
    conn.close()
    result = pair.run("--tables", "AllTypes", env=pair.env(SO_SOURCE_URL=url))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok: count+checksum" in result.stdout
    dst = pair.query("target", 'SELECT "i", "dtm", "vc", "nvc", "nvcm", "m", "u"::text FROM "AllTypes" ORDER BY "Id"')
    assert dst[0][1] == datetime(1753, 1, 1) and dst[1][1] == datetime(9999, 12, 31, 23, 59, 59, 997000)
    assert dst[1][2] == "" and dst[2][2] is None                     # empty string is not NULL
    assert dst[0][5] == Decimal("922337203685477.5807")
    assert "😀" in dst[0][4] and "\r" in dst[0][4] and "\\N" in dst[0][4]
    types = dict(pair.query("target", "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                                      "WHERE attrelid = '\"AllTypes\"'::regclass AND attnum > 0"))
    assert types["dtm"] == "timestamp(3) without time zone" and types["dto"] == "timestamp(6) with time zone"
