"""The freebcp way into SQL Server, what needs no SQL Server: PostgreSQL's COPY text of ``plan``'s
SELECT turned into freebcp's character format (read back here field by field, as freebcp reads
it), which rows ``plan`` leaves to pymssql, and how a failing freebcp is reported. Into a TDS
server: tests/test_mssql_integration.py -k freebcp."""
import io
import os
import stat
import sys

import pytest

from so_luigi.config import Endpoint, parse_url
from so_luigi.dialects.mssql import bulk, freebcp

TRICKY = r"""
CREATE TABLE "T" (id int PRIMARY KEY, t text, v varchar(10), c char(3), b boolean, by bytea, j jsonb,
                  ts timestamptz, f float8, dflt int DEFAULT 1);
INSERT INTO "T" VALUES
  (1, '', '', '', true, '\x', '{}', '2010-01-01 12:00:00.5+05:30', 0.1, 1),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 2),
  (3, E'a\tb\nc\rd\\e \\N \\n \b\f\v', E'\\', 'ab', false, '\x00ff', '"\\u00e9\\n"', '1753-01-01 00:00+00', -0.0, 3),
  (4, '\N', E'\\N', '  ', true, '\x01', 'null', '9999-12-31 23:59:59.999999+00', 1e308, 4),
  (5, 'naïve 日本語 😀', 'x', 'a', NULL, NULL, '[1, "ü"]', NULL, 5e-324, NULL),
  (6, 'ends in a blank ', E'\x1f', E'\x1d', NULL, NULL, NULL, '1752-12-31 23:59:59+00', NULL, 6),
  (7, E'\x1e', 'ok', 'ok', NULL, NULL, NULL, NULL, 2.2250738585072014e-308, 7);
"""


def _read_back(data, columns):
    """freebcp's character format as freebcp reads it: a lone NUL is '', an empty field NULL."""
    rows = data.split(freebcp.ROW)
    assert rows[-1] == b""
    out = []
    for row in rows[:-1]:
        fields = row.split(freebcp.FIELD)
        assert len(fields) == columns
        out.append(tuple(None if f == b"" else "" if f == b"\x00" else f.decode() for f in fields))
    return out


@pytest.fixture
def tricky(pair):
    from so_luigi.dialects.postgres.source import PostgresSource
    pair.query("source", TRICKY)
    src = PostgresSource(pair.source())
    with src.session() as conn:
        table = src.describe(conn, src.find_tables(conn, ["T"])[0])
    return pair, src, table


def test_postgres_copy_text_comes_out_as_freebcp_reads_it_and_the_rest_is_left_to_pymssql(tricky):
    pair, src, table = tricky
    exprs, bad = freebcp.plan(table, bulk.bulk_columns(table, "postgres"))
    out = io.BytesIO()
    converter = freebcp.Converter(out, len(exprs))
    src.text_reader(table, None, None, exprs, f"NOT coalesce({bad}, false)", freebcp.COPY_OPTIONS)(converter)
    converter.finish()
    sent = _read_back(out.getvalue(), len(exprs))
    assert converter.rows == len(sent)
    # what freebcp is sent: each value's text as PostgreSQL has it, in the forms SQL Server takes
    want = pair.query("source", """
        SELECT id::text, t, v, c, b::int::text, encode(by, 'hex'), j::text,
               to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), f::text, dflt::text
        FROM "T" ORDER BY id""")
    by_id = {row[0]: row for row in want}
    assert sorted(row[0] for row in sent) == ["2", "3", "4"]
    for row in sent:
        expected = list(by_id[row[0]])
        if expected[3] is not None:         # char(3): padded by SQL Server as by PostgreSQL, '' alike
            assert (row[3] or "").rstrip(" ") == expected[3].rstrip(" ")
            expected[3] = row[3]
        if expected[7] is not None:         # PostgreSQL prints no zero fraction
            assert row[7].startswith(expected[7].rstrip("0").rstrip("."))
            expected[7] = row[7]
        assert list(row) == expected, row[0]
    # the rest, each for a reason: empty bytes (1), a subnormal float and a NULL into a column with
    # a DEFAULT (5), a blank at the end, U+001F and U+001D (6), U+001E and a year before 1753 (7)
    left = pair.query("source", f'SELECT id FROM "T" WHERE coalesce({bad}, false) ORDER BY id')
    assert [r[0] for r in left] == [1, 5, 6, 7]


def test_an_empty_bytea_and_empty_text_travel_apart_and_alike(tricky):
    """Row 1 holds '' in every text column (a lone NUL each) and '\\x' bytes: its bytes go apart."""
    pair, src, table = tricky
    exprs, bad = freebcp.plan(table, bulk.bulk_columns(table, "postgres"))
    assert "octet_length" in bad
    out = io.BytesIO()
    converter = freebcp.Converter(out, len(exprs))
    src.text_reader(table, 0, 1, exprs, None, freebcp.COPY_OPTIONS)(converter)
    converter.finish()
    assert out.getvalue().split(freebcp.FIELD)[1:4] == [b"\x00", b"\x00", b"\x00"]


def test_plan_says_why_a_table_stays_with_pymssql(pair):
    from so_luigi.dialects.postgres.source import PostgresSource
    pair.query("source", 'CREATE TABLE "W" (id int PRIMARY KEY, tm time, iv interval); '
                         'CREATE TABLE "A" (id int PRIMARY KEY, arr int[])')
    src = PostgresSource(pair.source())
    with src.session() as conn:
        found = {name: src.describe(conn, src.find_tables(conn, [name])[0]) for name in ("W", "A")}
    assert freebcp.plan(found["W"], bulk.bulk_columns(found["W"], "postgres")).startswith("tm (time")
    assert freebcp.plan(found["A"], bulk.bulk_columns(found["A"], "postgres")) == "arr travels as json"


def test_a_row_short_of_its_fields_is_unsafe():
    with pytest.raises(freebcp.Unsafe):
        freebcp.to_bcp(b"1\x1fa\n2\n", 2)
    assert freebcp.to_bcp(b"1\x1f\x1d\n2\x1f\\\\\\n\n", 2) == b"1\x1f\x00\x1e2\x1f\\\n\x1e"


def test_the_password_never_reaches_freebcps_command_line():
    ep = Endpoint(parse_url("mssql://sa:S3cret!pw@db.example.com:1444/Sales?writer=freebcp"), "dbo", "target")
    cmd = freebcp.command(ep, "[dbo].[T]", True, "/dev/fd/5")
    assert "S3cret!pw" not in " ".join(cmd)
    assert cmd[cmd.index("-P") + 1] == "-" and cmd[cmd.index("-S") + 1] == "db.example.com:1444"
    assert "-E" in cmd and cmd[cmd.index("-D") + 1] == "Sales"
    assert freebcp.usable(ep) is None
    tls = Endpoint(parse_url("mssql://sa:pw@db/Sales?encrypt=require&trust_server_certificate=yes"), "dbo", "target")
    assert "TLS" in freebcp.usable(tls)


def _fake_freebcp(folder, script):
    """A stand-in freebcp on PATH: the error paths of run() without a server (a real one runs in
    the integration suite)."""
    path = folder / "freebcp"
    path.write_text(f"#!{sys.executable}\n{script}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_freebcp_failing_or_copying_fewer_rows_is_said_in_its_words(tmp_path, monkeypatch):
    ep = Endpoint(parse_url("mssql://sa:pw@db/Sales"), "dbo", "target")
    lines = b"1\x1fa\n2\x1fb\n3\x1fc\n"

    def read(sink):
        sink.write(lines)
    for path in _fake_freebcp(tmp_path, (
            "import sys, re\n"
            "assert sys.stdin.readline() == 'pw\\n'\n"
            "data = open(sys.argv[3], 'rb').read()\n"
            "print('Starting copy...')\n"
            "print('Msg 20049, Level 4\\nData conversion resulted in overflow')\n"
            "print(f'{data.count(bytes([30])) - 1} rows copied.')\n")).values():
        monkeypatch.setenv("PATH", path)
    with pytest.raises(freebcp.Failed, match=r"sent 3 rows and copied 2 \(exit 0\): Msg 20049, Level 4 "
                                             r"Data conversion resulted in overflow"):
        freebcp.run(ep, "[dbo].[T]", False, 2, read)
    for path in _fake_freebcp(tmp_path, "import sys\nprint('Login failed for user sa')\nsys.exit(1)\n").values():
        monkeypatch.setenv("PATH", path)
    with pytest.raises(freebcp.Failed, match=r"copied none \(exit 1\): Login failed"):
        freebcp.run(ep, "[dbo].[T]", False, 2, read)
