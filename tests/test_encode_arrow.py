"""The Arrow encoder (mssql-python's batches -> COPY text, column at a time) against the row
encoder: the same lines byte for byte, so the same checksum, for every value test_encode pins and
for generated ones. The values are built as mssql-python returns them (probed on Babelfish 4.3:
uniqueidentifier as upper-case text, datetimeoffset as a UTC timestamp, time as nanoseconds)."""
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from so_luigi import encode
from so_luigi.errors import DataError
from test_encode import CASES, one_value_per_row, table_of

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install so_luigi[test])")
from so_luigi.encode_arrow import BatchEncoder  # noqa: E402


def arrow_type(kind, typ, values):
    """The Arrow type mssql-python gives a column of this kind."""
    if kind == "numeric":
        scale = encode._scale(table_of([(kind, typ, None, None)]).columns[0])
        return pa.decimal128(38, scale)
    return {"int": pa.int64(), "bool": pa.bool_(), "float8": pa.float64(), "float4": pa.float32(),
            "date": pa.date32(), "timestamp": pa.timestamp("us"), "timestamptz": pa.timestamp("us", tz="+00:00"),
            "time": pa.time64("ns"), "bytea": pa.large_binary()}.get(kind, pa.large_string())


def driver_value(kind, value):
    if value is None:
        return None
    if kind == "uuid":
        return str(value).upper()
    if kind == "timestamptz":
        return value.astimezone(timezone.utc)
    if kind == "numeric":
        return Decimal(value)
    return value


def batch_of(table, rows):
    cols = list(zip(*rows)) if rows else [[] for _ in table.columns]
    arrays = [pa.array([driver_value(c.kind, v) for v in values], arrow_type(c.kind, c.pg_type, values))
              for c, values in zip(table.columns, cols)]
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in table.columns])


def arrow_lines(table, rows, **policy):
    data, n, total = BatchEncoder(table, **policy)(batch_of(table, rows), True)
    assert n == len(rows)
    return bytes(data), total


def row_lines(table, rows, **policy):
    lines = encode.encode_lines(encode.make_row_encoder(table, **policy)(rows))
    return b"".join(line + b"\n" for line in lines), encode.lines_checksum(lines)


@pytest.mark.parametrize("kind,typ,value,expected", CASES, ids=[f"{c[1]}:{c[3][:20]!r}" for c in CASES])
def test_value_is_encoded_as_the_row_encoder_does(kind, typ, value, expected):
    table = table_of([(kind, typ, value, expected)])
    data, total = arrow_lines(table, [(value,)])
    assert data == expected.encode() + b"\n"
    assert total == encode.lines_checksum([expected.encode()])


def test_every_case_in_one_table_gives_the_same_lines_and_checksum():
    table = table_of(CASES)
    rows = one_value_per_row(CASES)
    assert arrow_lines(table, rows) == row_lines(table, rows)


def test_a_batch_slice_encodes_only_its_rows():
    table = table_of([("text", "text", None, None), ("int", "integer", None, None)])
    rows = [(f"v\t{i}", i) for i in range(10)]
    data, _, total = BatchEncoder(table)(batch_of(table, rows).slice(3, 4), True)
    assert (bytes(data), total) == row_lines(table, rows[3:7])


def test_generated_columns_are_checksummed_but_not_sent():
    table = table_of([("int", "integer", None, None), ("text", "text", None, None), ("int", "bigint", None, None)])
    table.columns[2] = replace(table.columns[2], generated="c0 * 2")
    rows = [(1, "a\nb", 2), (2, None, 4)]
    data, total = arrow_lines(table, rows)
    assert data == b"1\ta\\nb\n2\t\\N\n"
    assert total == row_lines(table, rows)[1]        # over every column read
    assert total != encode.lines_checksum([b"1\ta\\nb", b"2\t\\N"])


def test_a_value_the_destination_must_round_takes_the_row_path():
    """timestamp(3) of a value with microseconds: PostgreSQL rounds it (half away from zero,
    from its 2000 epoch); the Arrow cast would print all six digits."""
    table = table_of([("int", "integer", None, None), ("timestamp", "timestamp(3)", None, None),
                      ("time", "time(0)", None, None)])
    rows = [(1, datetime(2010, 1, 2, 3, 4, 5, 6667), None), (2, datetime(1999, 12, 31, 23, 59, 59, 999600), None),
            (3, None, datetime(2000, 1, 1, 1, 2, 3, 500000).time())]
    assert arrow_lines(table, rows) == row_lines(table, rows)
    assert b"2000-01-01 00:00:00\t" in arrow_lines(table, rows)[0]


def test_a_decimal_arrow_prints_in_scientific_notation_takes_the_row_path():
    table = table_of([("numeric", "numeric(38,10)", None, None), ("numeric", "numeric(12,6)", None, None)])
    rows = [(Decimal("0E-10"), Decimal("0.000001")), (Decimal("0.0000001234"), Decimal("-0.000002")),
            (Decimal("12.5"), Decimal("0"))]
    data, _ = arrow_lines(table, rows)
    assert data == b"0.0000000000\t0.000001\n0.0000001234\t-0.000002\n12.5000000000\t0.000000\n"
    assert arrow_lines(table, rows) == row_lines(table, rows)


def test_a_nul_fails_naming_table_key_and_column():
    table = table_of([("int", "integer", None, None), ("text", "text", None, None)])
    table.primary_key = ["c0"]
    with pytest.raises(DataError) as err:
        arrow_lines(table, [(1, "fine"), (7, "bad\x00value")])
    assert "c0=7" in str(err.value) and "column c1" in str(err.value) and "U+0000" in str(err.value)


@pytest.mark.parametrize("policy", [dict(nul="strip"), dict(nul="replace", nul_replacement="?\\")])
def test_a_nul_stripped_or_replaced_as_the_row_encoder_does_and_counted(policy):
    table = table_of([("text", "text", None, None), ("text", "text", None, None)])
    rows = [("a\x00b", "\x00"), ("clean", None), ("x\x00\x00", "y")]
    encoder = BatchEncoder(table, **policy)
    data, _, total = encoder(batch_of(table, rows), True)
    row = encode.make_row_encoder(table, **policy)
    assert (bytes(data), total) == row_lines(table, rows, **policy)
    row(rows)
    assert encoder.changed == row.changed == {"c0": 2, "c1": 1}


texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
timestamps = st.datetimes(min_value=datetime(1753, 1, 1), max_value=datetime(9999, 12, 31))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.none() | st.integers(-2**63, 2**63 - 1), st.none() | texts,
                          st.none() | timestamps, st.none() | timestamps, st.none() | st.booleans(),
                          st.none() | st.decimals(-10**14, 10**14, places=4, allow_nan=False)),
                min_size=1, max_size=30))
def test_generated_rows_give_the_same_lines_and_checksum(rows):
    table = table_of([("int", "bigint", None, None), ("text", "text", None, None),
                      ("timestamp", "timestamp(6)", None, None), ("timestamp", "timestamp(3)", None, None),
                      ("bool", "boolean", None, None), ("numeric", "numeric(19,4)", None, None)])
    assert arrow_lines(table, rows) == row_lines(table, rows)


def test_the_encoder_says_when_a_value_as_the_driver_gave_it_held_a_replacement_character():
    """U+FFFD in a driver's text (what mssql-python makes of an unpaired surrogate) is reported;
    the U+FFFD the nul = replace policy puts in is not."""
    table = table_of([("text", "text", None, None), ("variant", "jsonb", None, None)])
    encoder = BatchEncoder(table, nul="replace")
    encoder(batch_of(table, [("a\x00b", None)]), False)
    assert not encoder.replacement
    encoder(batch_of(table, [("x\ufffdy", None)]), False)
    assert encoder.replacement
    encoder(batch_of(table, [("plain", "int\x1f\ufffd")]), False)
    assert encoder.replacement
    encoder(batch_of(table, [("plain", None)]), False)
    assert not encoder.replacement


# --- CSV, for a copy whose checksum both servers compute ------------------------------------------

def csv_data(table, rows, **policy):
    from so_luigi.encode_arrow import CsvBatchEncoder
    encoder = CsvBatchEncoder(table, **policy)
    data, n, total = encoder(batch_of(table, rows))
    assert n == len(rows) and total is None
    return bytes(data), encoder


def loaded(cluster, table, data, fmt):
    """The rows PostgreSQL stores from ``data`` (COPY ``fmt``), as it prints them, in order."""
    import psycopg2
    import io
    url = cluster.create_database(f"csv_{__import__('uuid').uuid4().hex[:8]}")
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cols = ", ".join(f'"{c.name}" {c.pg_type}' for c in table.columns)
            cur.execute(f'CREATE TABLE t (n serial, {cols})')
            names = ", ".join(f'"{c.name}"' for c in table.loaded_columns)
            cur.copy_expert(f"COPY t ({names}) FROM STDIN WITH (FORMAT {fmt})", io.BytesIO(data))
            cur.execute(f"SELECT {', '.join(chr(34) + c.name + chr(34) + '::text' for c in table.loaded_columns)} "
                        "FROM t ORDER BY n")
            return cur.fetchall()
    finally:
        conn.close()


def test_every_case_as_csv_is_stored_as_its_copy_text_is(cluster):
    """Each value of the encoders' cases, as pyarrow writes it in CSV (and as the row path's CSV
    encoder does, the pymssql fallback), is stored by PostgreSQL as the value its COPY text
    line stores: '' and NULL apart, the quotes, commas, line breaks and lone \\. of text, the
    shortest floats, decimals, bytes, and times rounded by PostgreSQL as the text path rounds
    them."""
    table = table_of(CASES)
    rows = one_value_per_row(CASES)
    text, _ = row_lines(table, rows)
    csv, _ = csv_data(table, rows)
    row_csv = b"".join(line + b"\n" for line in encode.encode_lines(encode.make_row_encoder(table, csv=True)(rows)))
    expected = loaded(cluster, table, text, "text")
    assert len(expected) == len(rows)
    assert loaded(cluster, table, csv, "csv") == expected
    assert loaded(cluster, table, row_csv, "csv") == expected


def test_csv_quotes_every_string_and_leaves_null_empty():
    """What the copy relies on in pyarrow's writer: an empty string is "" (an empty field is
    NULL), and a one-column table's lone \\. is quoted (it would end the data)."""
    table = table_of([("text", "text", None, None)])
    data, _ = csv_data(table, [("",), (None,), ("\\.",), ('a"b,c',)])
    assert data == b'""\n\n"\\."\n"a""b,c"\n'


def test_csv_leaves_generated_columns_out_and_cuts_a_seventh_digit():
    table = table_of([("int", "integer", None, None), ("timestamp", "timestamp(6)", None, None),
                      ("int", "bigint", None, None)])
    table.columns[2] = replace(table.columns[2], generated="c0 * 2")
    batch = pa.RecordBatch.from_arrays([pa.array([1, 2], pa.int64()),
                                        pa.array([1262304000123456789, None], pa.timestamp("ns")),
                                        pa.array([2, 4], pa.int64())], names=["c0", "c1", "c2"])
    from so_luigi.encode_arrow import CsvBatchEncoder
    data, _, _ = CsvBatchEncoder(table)(batch)
    assert bytes(data) == b"1,2010-01-01 00:00:00.123456\n2,\n"


def test_csv_keeps_the_nul_policy_and_says_when_text_held_a_replacement_character():
    table = table_of([("int", "integer", None, None), ("text", "text", None, None)])
    table.primary_key = ["c0"]
    with pytest.raises(DataError, match="c0=7.*column c1.*U\\+0000"):
        csv_data(table, [(1, "fine"), (7, "bad\x00value")])
    data, encoder = csv_data(table, [(1, "a\x00b"), (2, "x\ufffdy")], nul="strip")
    assert data == b'1,"ab"\n2,"x\xef\xbf\xbdy"\n' and encoder.changed == {"c1": 1} and encoder.replacement
    with pytest.raises(ValueError, match="hashes no line"):
        __import__("so_luigi.encode_arrow", fromlist=["x"]).CsvBatchEncoder(table)(batch_of(table, [(1, "a")]), True)


# --- PostgreSQL's binary COPY (pgpq), where the destination's types allow ---------------------------

def names(table):
    from so_luigi.dialects.base import type_name
    return [type_name(c.pg_type) for c in table.columns]


def binary_cases():
    from so_luigi.dialects.base import type_name
    from so_luigi.encode_arrow import BINARY_TYPES
    return [case for case in CASES if type_name(case[1]) in BINARY_TYPES]


def test_every_binary_case_is_stored_as_its_copy_text_is(cluster):
    """Each value of the encoders' cases whose destination type binary COPY carries (integers,
    booleans, floats, dates, timestamps PostgreSQL rounds to the column's precision, text, bytes,
    uuids as mssql-python's upper-case text), sent as pgpq's binary COPY, is stored as the value
    its COPY text line stores."""
    pytest.importorskip("pgpq", reason="pgpq is not installed (pip install so_luigi[test])")
    from so_luigi.encode_arrow import BinaryBatchEncoder
    from so_luigi.stream import BINARY_SIGNATURE
    cases = binary_cases()
    assert {c[0] for c in cases} >= {"int", "bool", "float4", "float8", "date", "timestamp", "text", "bytea", "uuid",
                                     "numeric"}
    table = table_of(cases)
    rows = one_value_per_row(cases)
    encoder = BinaryBatchEncoder(table, names(table))
    half = len(rows) // 2
    parts = [encoder(batch_of(table, rows[:half])), encoder(batch_of(table, rows[half:]))]
    assert [n for _, n, _ in parts] == [half, len(rows) - half] and encoder.binary
    data = b"".join(bytes(d) for d, _, _ in parts) + encoder.finish()
    assert data.startswith(BINARY_SIGNATURE)
    text, _ = row_lines(table, rows)
    expected = loaded(cluster, table, text, "text")
    assert len(expected) == len(rows)
    assert loaded(cluster, table, data, "binary") == expected


def test_a_type_binary_copy_does_not_carry_here_sends_the_partition_as_csv():
    """A time column (or a driver's Arrow type that is not the one expected) keeps the whole
    partition in CSV: no binary signature, the same bytes as the CSV encoder's."""
    from datetime import time
    pytest.importorskip("pgpq", reason="pgpq is not installed (pip install so_luigi[test])")
    from so_luigi.encode_arrow import BinaryBatchEncoder
    rows = [(1, time(12, 30, 1, 500)), (2, None)]
    table = table_of([("int", "integer", None, None), ("time", "time(6)", None, None)])
    encoder = BinaryBatchEncoder(table, names(table))
    data, _, _ = encoder(batch_of(table, rows))
    assert not encoder.binary and bytes(data) == csv_data(table, rows)[0] and encoder.finish() == b""
    table = table_of([("int", "integer", None, None), ("date", "date", None, None)])
    odd = pa.RecordBatch.from_arrays([pa.array([1], pa.int64()), pa.array(["2020-01-01"], pa.large_string())],
                                     names=["c0", "c1"])
    encoder = BinaryBatchEncoder(table, names(table))
    assert bytes(encoder(odd)[0]) == b'1,"2020-01-01"\n' and not encoder.binary


def test_binary_keeps_the_nul_policy_and_the_replacement_watch():
    pytest.importorskip("pgpq", reason="pgpq is not installed (pip install so_luigi[test])")
    from so_luigi.encode_arrow import BinaryBatchEncoder
    table = table_of([("int", "integer", None, None), ("text", "text", None, None)])
    table.primary_key = ["c0"]
    with pytest.raises(DataError, match="c0=7.*column c1.*U\\+0000"):
        BinaryBatchEncoder(table, names(table))(batch_of(table, [(1, "fine"), (7, "bad\x00value")]))
    encoder = BinaryBatchEncoder(table, names(table), nul="strip")
    data, _, _ = encoder(batch_of(table, [(1, "a\x00b"), (2, "x\ufffdy")]))
    data = bytes(data) + encoder.finish()          # pgpq holds up to about 1 MB before it hands it out
    assert encoder.binary and encoder.changed == {"c1": 1} and encoder.replacement and b"\x00\x00\x00\x02ab" in data


def test_uuid_text_becomes_its_sixteen_bytes():
    import uuid
    from so_luigi.encode_arrow import uuid_bytes
    values = [str(uuid.uuid4()).upper(), None, str(uuid.uuid4()), "00000000-0000-0000-0000-000000000001"]
    arr = pa.array(values, pa.large_string())
    for part in (arr, arr.slice(1, 3), arr.slice(2)):
        assert uuid_bytes(part).to_pylist() == [None if v is None else uuid.UUID(v).bytes for v in part.to_pylist()]
    for bad in ("6F9619FF-8B86-D011-B42D-00C04FC964F", "6F9619FFx8B86-D011-B42D-00C04FC964FF",
                "6F9619FF-8B86-D011-B42D-00C04FC964FG"):
        with pytest.raises(ValueError, match="uuid"):
            uuid_bytes(pa.array([bad], pa.large_string()))


def test_the_writer_tells_binary_copy_from_csv_by_its_first_bytes():
    """stream.binary_copy: data starting with binary COPY's signature is COPYed as binary, else in
    the format asked; either way the file gives every byte again, whether the pipe hands out
    whole chunks or a few bytes at a time."""
    import io
    from so_luigi.stream import BINARY_SIGNATURE, binary_copy

    class Trickle(io.BytesIO):
        def read(self, size=-1):
            return super().read(3)

    for data, fmt in ((BINARY_SIGNATURE + b"\x00" * 8 + b"\xff\xff", "binary"), (b'1,"a"\n', "csv"),
                      (b"", "csv"), (BINARY_SIGNATURE[:5], "csv")):
        for source in (io.BytesIO(data), Trickle(data)):
            used, replay = binary_copy(source, "csv")
            got = b"".join(iter(lambda: replay.read(1 << 16), b""))
            assert (used, got) == (fmt, data)


def test_binary_cuts_a_seventh_digit_as_csv_does(cluster):
    """A datetime2(7) value (Arrow nanoseconds) goes at microseconds, the seventh digit dropped,
    and PostgreSQL rounds it to the column's precision, as from CSV."""
    pytest.importorskip("pgpq", reason="pgpq is not installed (pip install so_luigi[test])")
    from so_luigi.encode_arrow import BinaryBatchEncoder, CsvBatchEncoder
    table = table_of([("int", "integer", None, None), ("timestamp", "timestamp(6)", None, None),
                      ("timestamp", "timestamp(3)", None, None)])
    stamps = [1262304000123456789, 1262304000999999999, None]
    batch = pa.RecordBatch.from_arrays([pa.array([1, 2, 3], pa.int64()), pa.array(stamps, pa.timestamp("ns")),
                                        pa.array(stamps, pa.timestamp("ns"))], names=["c0", "c1", "c2"])
    encoder = BinaryBatchEncoder(table, names(table))
    data = bytes(encoder(batch)[0]) + encoder.finish()
    assert encoder.binary
    stored = loaded(cluster, table, data, "binary")
    assert stored == loaded(cluster, table, bytes(CsvBatchEncoder(table)(batch)[0]), "csv")
    assert stored[0] == ("1", "2010-01-01 00:00:00.123456", "2010-01-01 00:00:00.123")
