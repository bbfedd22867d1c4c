"""The row encoder: byte-exact expectations, then the same values through a real COPY.

The encoder promises more than valid input: each line is exactly what PostgreSQL's own COPY TO
prints for the stored row, which is what lets the row path checksum what it sends.
"""
import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import psycopg2
import pytest

from so_luigi import encode
from so_luigi.dialects.postgres import types as pg_types
from so_luigi.dialects.postgres import checksum as pg_checksum, connection as pg_connection, ddl as pg_ddl
from so_luigi.dialects.base import Column, Table
from so_luigi.errors import DataError

ALL_ASCII_CONTROLS = "".join(chr(c) for c in range(1, 32)) + "\x7f"

# (kind, destination type, value, exact COPY text)
CASES = [
    ("text", "text", "", ""),
    ("text", "text", "plain", "plain"),
    ("text", "text", "tab\there", "tab\\there"),
    ("text", "text", "line\nbreak\r\nwin\rmac", "line\\nbreak\\r\\nwin\\rmac"),
    ("text", "text", "back\\slash", "back\\\\slash"),
    ("text", "text", "\\N", "\\\\N"),
    ("text", "text", "\\.", "\\\\."),
    ("text", "text", '"quotes" and \'single\', commas; pipes|', '"quotes" and \'single\', commas; pipes|'),
    ("text", "text", "naïve café 日本語 Ελληνικά 😀", "naïve café 日本語 Ελληνικά 😀"),
    ("text", "text", ALL_ASCII_CONTROLS,
     ALL_ASCII_CONTROLS.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")),
    ("text", "varchar(40)", "x" * 40, "x" * 40),
    ("text", "char(5)", "ab   ", "ab   "),
    ("bool", "boolean", True, "t"),
    ("bool", "boolean", False, "f"),
    ("int", "integer", 0, "0"),
    ("int", "integer", -2147483648, "-2147483648"),
    ("int", "bigint", 9223372036854775807, "9223372036854775807"),
    ("int", "smallint", 255, "255"),
    ("numeric", "numeric(10,2)", Decimal("1.5"), "1.50"),
    ("numeric", "numeric(38,10)", Decimal("-12345678901234567890123456.1234567891"),
     "-12345678901234567890123456.1234567891"),
    ("numeric", "numeric(19,4)", Decimal("922337203685477.5807"), "922337203685477.5807"),
    ("numeric", "numeric(10,4)", Decimal("0E-8"), "0.0000"),
    ("float8", "double precision", 0.1, "0.1"),
    ("float8", "double precision", 1e15, "1e+15"),
    ("float8", "double precision", 123456789012345.6, "123456789012345.6"),
    ("float8", "double precision", 1e-5, "1e-05"),
    ("float8", "double precision", 0.0001, "0.0001"),
    ("float8", "double precision", -1.7976931348623157e308, "-1.7976931348623157e+308"),
    ("float8", "double precision", 5e-324, "5e-324"),
    ("float8", "double precision", float("inf"), "Infinity"),
    ("float8", "double precision", float("-inf"), "-Infinity"),
    ("float8", "double precision", float("nan"), "NaN"),
    ("float8", "double precision", 100.0, "100"),
    ("float4", "real", 0.1, "0.1"),
    ("float4", "real", 1 / 3, "0.33333334"),
    ("float4", "real", 1234567.0, "1.234567e+06"),
    ("float4", "real", 123456.0, "123456"),
    ("float4", "real", 3.4028234663852886e38, "3.4028235e+38"),
    ("date", "date", date(1753, 1, 1), "1753-01-01"),
    ("date", "date", date(9999, 12, 31), "9999-12-31"),
    ("timestamp", "timestamp(3)", datetime(2010, 1, 2, 3, 4, 5, 3000), "2010-01-02 03:04:05.003"),
    ("timestamp", "timestamp(3)", datetime(2010, 1, 2, 3, 4, 5, 6667), "2010-01-02 03:04:05.007"),
    ("timestamp", "timestamp(3)", datetime(2010, 1, 2, 3, 4, 5, 0), "2010-01-02 03:04:05"),
    ("timestamp", "timestamp(3)", datetime(2010, 1, 2, 3, 4, 5, 500000), "2010-01-02 03:04:05.5"),
    ("timestamp", "timestamp(3)", datetime(1753, 1, 1), "1753-01-01 00:00:00"),
    ("timestamp", "timestamp(3)", datetime(9999, 12, 31, 23, 59, 59, 997000), "9999-12-31 23:59:59.997"),
    ("timestamp", "timestamp(3)", datetime(1999, 12, 31, 23, 59, 59, 1500), "1999-12-31 23:59:59.001"),
    ("timestamp", "timestamp(6)", datetime(2020, 2, 29, 12, 0, 0, 123456), "2020-02-29 12:00:00.123456"),
    ("timestamp", "timestamp(0)", datetime(2020, 2, 29, 12, 0, 0, 500000), "2020-02-29 12:00:01"),
    ("timestamptz", "timestamptz(6)",
     datetime(2010, 1, 1, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=5, minutes=30))),
     "2010-01-01 06:30:00.25+00"),
    ("time", "time(6)", time(23, 59, 59, 999999), "23:59:59.999999"),
    ("time", "time(3)", time(1, 2, 3, 4500), "01:02:03.005"),
    ("time", "time(6)", time(0, 0), "00:00:00"),
    ("uuid", "uuid", uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF"), "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
    ("bytea", "bytea", b"", "\\\\x"),
    ("bytea", "bytea", bytes(range(256))[:20] + b"\\\t\n", "\\\\x" + (bytes(range(20)) + b"\\\t\n").hex()),
]


def table_of(cases, name="enc"):
    cols = [Column(name=f"c{i}", data_type=kind, kind=kind, pg_type=typ, source_type=typ)
            for i, (kind, typ, _, _) in enumerate(cases)]
    return Table(schema="public", name=name, columns=cols)


def one_value_per_row(cases):
    """Row i holds case i's value and NULL elsewhere; a last row is all NULL."""
    rows = [tuple(case[2] if j == i else None for j in range(len(cases))) for i, case in enumerate(cases)]
    return rows + [tuple([None] * len(cases))]


@pytest.mark.parametrize("kind,typ,value,expected", CASES, ids=[f"{c[1]}:{c[3][:20]!r}" for c in CASES])
def test_value_is_encoded_byte_exact(kind, typ, value, expected):
    table = table_of([(kind, typ, value, expected)])
    assert encode.make_row_encoder(table)([(value,)]) == [expected]


def test_null_and_empty_string_differ():
    table = table_of([("text", "text", None, None), ("text", "text", None, None)])
    assert encode.make_row_encoder(table)([(None, ""), ("", None)]) == ["\\N\t", "\t\\N"]


def test_nul_character_is_refused_naming_table_key_and_column():
    table = table_of([("int", "integer", 0, "0"), ("text", "text", "", "")])
    table.primary_key = ["c0"]
    with pytest.raises(DataError, match=r"public.enc c0=7 column c1 .*U\+0000"):
        encode.make_row_encoder(table)([(6, "ok"), (7, "bad\x00")])


def test_every_case_round_trips_through_copy_and_checksums_match(pair):
    """COPY the encoded rows in; PostgreSQL's COPY out must print the very same lines."""
    table = table_of(CASES)
    rows = one_value_per_row(CASES)
    lines = encode.make_row_encoder(table)(rows)
    blines = encode.encode_lines(lines)
    conn = psycopg2.connect(pair.target_url)
    try:
        with conn.cursor() as cur:
            cur.execute(pg_connection.SESSION_SETTINGS)
            cur.execute(pg_ddl.create_table_sql("public", table))
            data = b"\n".join(blines) + b"\n"

            class Reader:
                sent = False

                def read(self, size):
                    if self.sent:
                        return b""
                    self.sent = True
                    return data
            cur.copy_expert(pg_ddl.copy_in_sql("public", table, "text"), Reader())
            out = []

            class Writer:
                def write(self, chunk):
                    out.append(bytes(chunk))
            cur.execute("SELECT 1")
            cur.copy_expert("COPY public.enc TO STDOUT", Writer())
            # COPY TO also escapes \b \f \v, which COPY FROM reads either way; the encoder sends
            # them raw (fewer replace() calls in the checksum SQL), so compare with those unescaped
            plain = {b"b": b"\x08", b"f": b"\x0c", b"v": b"\x0b"}
            printed = [re.sub(rb"\\(.)", lambda m: plain.get(m.group(1), m.group(0)), o.rstrip(b"\n"))
                       for o in out]
            assert printed == blines
            cur.execute(pg_checksum.checksum_sql("public", table))
            count, checksum = cur.fetchone()
            assert count == len(rows)
            assert int(checksum) == encode.lines_checksum(blines)
    finally:
        conn.rollback()
        conn.close()


def test_unpaired_surrogate_is_reported_with_its_key():
    from so_luigi import stream
    table = table_of([("int", "integer", 0, "0"), ("text", "text", "", "")])
    table.primary_key = ["c0"]

    class Sink:
        def write(self, data, rows=1):
            pass
    with pytest.raises(DataError, match="c0=2: .*surrogate"):
        stream.copy_rows([[(1, "fine"), (2, "bad \ud800 half")]], encode.make_row_encoder(table), Sink(),
                         True, table)


def test_checksum_sql_escapes_only_types_that_need_it():
    table = table_of([("int", "integer", 0, "0"), ("text", "varchar(10)", "", ""), ("text", "char(3)", "", "")])
    sql = pg_checksum.checksum_sql("public", table)
    assert 'coalesce("c0"::text' in sql
    assert "replace(replace(replace(replace(\"c1\"::text" in sql
    assert "bpcharout(\"c2\")::text" in sql
    assert pg_types.is_plain("timestamp(3) without time zone") and not pg_types.is_plain("text")


def test_rounding_and_float_text_agree_with_postgresql(pair):
    """PostgreSQL is the oracle: its own casts of full-precision input give the same text."""
    import random
    r = random.Random(7)
    stamps = [datetime(1999, 12, 31, 23, 59, 59, us) for us in (1500, 2500, 999500, 500, 4999, 5000)]
    stamps += [datetime(2000, 1, 1, 0, 0, 0, us) for us in (1500, 2500, 500, 999500)]
    stamps += [datetime(1753, 1, 1) + timedelta(microseconds=r.randrange(8000 * 365 * 86400 * 10**6))
               for _ in range(300)]
    floats = [r.uniform(-1e6, 1e6) for _ in range(200)] + [10.0 ** e for e in range(-12, 30)]
    floats += [2.0 ** e for e in range(-1070, 1020)]     # lopsided intervals (found by hypothesis)
    floats += [r.random() * 10.0 ** r.randint(-300, 300) for _ in range(200)]
    conn = psycopg2.connect(pair.target_url)
    try:
        with conn.cursor() as cur:
            cur.execute(pg_connection.SESSION_SETTINGS)
            for digits in (0, 3, 6):
                enc = encode.timestamp_converter(digits)
                cur.execute(f"SELECT x::timestamp({digits})::text FROM unnest(%s::text[]) x",
                            ([s.isoformat(" ") for s in stamps],))
                assert [row[0] for row in cur.fetchall()] == [enc(s) for s in stamps]
            cur.execute("SELECT x::float8::text FROM unnest(%s::text[]) x", ([repr(f) for f in floats],))
            assert [g[0] for g in cur.fetchall()] == [encode.float8(f) for f in floats]
            singles = [f for f in floats if 1.2e-38 < abs(f) < 3.4e38]
            cur.execute("SELECT x::float4::text FROM unnest(%s::text[]) x", ([repr(f) for f in singles],))
            assert [g[0] for g in cur.fetchall()] == [encode.float4(f) for f in singles]
    finally:
        conn.close()


# (kind, destination type, value, exact CSV field)
CSV_CASES = [
    ("text", "text", "", '""'),
    ("text", "text", "plain", "plain"),
    ("text", "text", "a,b", '"a,b"'),
    ("text", "text", 'say "hi"', '"say ""hi"""'),
    ("text", "text", "line\nbreak", '"line\nbreak"'),
    ("text", "text", "cr\rhere", '"cr\rhere"'),
    ("text", "text", "tab\there", "tab\there"),
    ("text", "text", "back\\slash \\N", "back\\slash \\N"),
    ("text", "text", "\\.", '"\\."'),
    ("text", "text", " padded ", " padded "),
    ("text", "text", "naïve 日本語 😀", "naïve 日本語 😀"),
    ("text", "text", ALL_ASCII_CONTROLS, '"' + ALL_ASCII_CONTROLS + '"'),
    ("bytea", "bytea", b"\x00,\n\"", "\\x002c0a22"),
    ("bool", "boolean", True, "t"),
    ("numeric", "numeric(10,2)", Decimal("-1.5"), "-1.50"),
    ("timestamp", "timestamp(3)", datetime(2010, 1, 2, 3, 4, 5, 6667), "2010-01-02 03:04:05.007"),
    ("float8", "double precision", float("nan"), "NaN"),
    ("uuid", "uuid", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
]


@pytest.mark.parametrize("kind,typ,value,expected", CSV_CASES, ids=[f"{c[1]}:{c[3][:20]!r}" for c in CSV_CASES])
def test_csv_value_is_encoded_byte_exact(kind, typ, value, expected):
    table = table_of([(kind, typ, value, expected)])
    assert encode.make_row_encoder(table, csv=True)([(value,)]) == [expected]


def test_csv_null_and_empty_string_differ():
    table = table_of([("text", "text", None, None), ("text", "text", None, None)])
    assert encode.make_row_encoder(table, csv=True)([(None, ""), ("", None)]) == [',""', '"",']


def test_csv_round_trips_through_copy_byte_exact(pair):
    """COPY the CSV in; PostgreSQL's own CSV output is the very same bytes."""
    cases = CSV_CASES + CASES
    table = table_of(cases, name="csv")
    rows = one_value_per_row(cases)
    data = b"".join(line + b"\n" for line in encode.encode_lines(encode.make_row_encoder(table, csv=True)(rows)))
    text_lines = encode.encode_lines(encode.make_row_encoder(table)(rows))
    import io
    conn = psycopg2.connect(pair.target_url)
    try:
        with conn.cursor() as cur:
            cur.execute(pg_connection.SESSION_SETTINGS)
            cur.execute(pg_ddl.create_table_sql("public", table))
            cur.copy_expert(pg_ddl.copy_in_sql("public", table, "csv"), io.BytesIO(data))
            out = io.BytesIO()
            cur.copy_expert("COPY public.csv TO STDOUT WITH (FORMAT csv)", out)
            assert out.getvalue() == data
            cur.execute(pg_checksum.checksum_sql("public", table))
            assert int(cur.fetchone()[1]) == encode.lines_checksum(text_lines)
    finally:
        conn.rollback()
        conn.close()
