"""The hot path, column at a time: Arrow record batches -> PostgreSQL COPY text, plus the row
checksum, for a driver that returns Arrow (mssql-python's ``arrow_batch``).

Each column becomes its COPY text in pyarrow's C kernels where its Arrow type and its destination
type leave no doubt about what PostgreSQL prints (integers, booleans, text, uuids, dates,
timestamps and times at the destination's precision, decimals at the destination's scale), and
through ``encode``'s converter value by value where they do (floats, whose shortest form
PostgreSQL prints by its own rule; bytes; sql_variant; a timestamp the destination must round).
Either way a line is byte for byte what ``encode.make_row_encoder`` writes for the same values
(tests/test_encode_arrow.py holds them side by side), so the checksum is the same definition:
the sum of the signed 64-bit heads of md5(line), which the destination computes from what it
stored (postgres.checksum_sql).

Where both servers compute the checksum (mssql ``checksum.FROM_MSSQL``), no line is hashed and
``CsvBatchEncoder`` hands the batch to pyarrow's CSV writer instead, a third of the cost.
"""
import binascii
import struct
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from . import encode
from .errors import DataError

TEXT = pa.large_string()
TAB, NEWLINE, NULL = (pa.scalar(s, TEXT) for s in ("\t", "\n", encode.NULL))
REPLACEMENT = "\ufffd".encode()     # U+FFFD, which a driver may make of text it could not decode
# COPY text escapes, in the order encode.text applies them (the backslash first)
ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def _strings(arr):
    return pc.cast(arr, TEXT)


def _data(arr):
    """The bytes of a string array's values (for a slice, with the bytes around it too)."""
    data = arr.buffers()[2]
    return b"" if data is None else data.to_pybytes()


def _replaced(data):
    """Whether ``data`` holds U+FFFD: a memchr for its first byte first (a tenth of the cost of
    the three-byte search, which text with no 0xEF byte never needs)."""
    return REPLACEMENT[:1] in data and REPLACEMENT in data


def _escaped(arr, data):
    """COPY text escapes, each replace run only when its character occurs in ``data``: a C
    memchr over the bytes is ten times cheaper than pyarrow's match_substring."""
    for plain, escaped in ESCAPES:
        if plain.encode() in data:
            arr = pc.replace_substring(arr, plain, escaped)
    return arr


def _no_zeros(arr):
    """A time's text as Arrow casts it at microseconds (always six fractional digits) as
    PostgreSQL prints it: trailing zeros of the fraction dropped, and the point when nothing is
    left of it."""
    return pc.ascii_rtrim(pc.ascii_rtrim(arr, "0"), ".")


def _exact_at(micro, digits):
    """Whether no value (timestamp[us] or time64[us]) has more fractional digits than the
    destination keeps: nothing for PostgreSQL to round."""
    if digits >= 6:
        return True
    scale = 10 ** (6 - digits)
    n = pc.cast(micro, pa.int64())
    return not pc.any(pc.not_equal(pc.subtract(n, pc.multiply(pc.divide(n, scale), scale)), 0)).as_py()


def _timestamp(arr, col):
    if not pa.types.is_timestamp(arr.type) or arr.type.tz is not None:
        return None
    micro = pc.cast(arr, pa.timestamp("us"))
    return _no_zeros(_strings(micro)) if _exact_at(micro, encode._fsp(col)) else None


def _timestamptz(arr, col):
    if not pa.types.is_timestamp(arr.type) or arr.type.tz not in ("+00:00", "UTC", "Z"):
        return None
    micro = pc.cast(arr, pa.timestamp("us"))            # the same instant as its UTC wall time
    if not _exact_at(micro, encode._fsp(col)):
        return None
    return pc.binary_join_element_wise(_no_zeros(_strings(micro)), pa.scalar("+00", TEXT), pa.scalar("", TEXT))


def _time(arr, col):
    if not pa.types.is_time(arr.type):
        return None
    micro = pc.cast(arr, pa.time64("us"), safe=False)   # a seventh digit dropped, as pymssql does
    return _no_zeros(_strings(micro)) if _exact_at(micro, encode._fsp(col)) else None


def decimal_text(arr):
    """A decimal array's text with all its scale's digits, or None: Arrow prints a value in
    scientific notation when its adjusted exponent is below -6, which a scale above 6 allows
    (0 at scale 10 is ``0E-10``), and such a batch takes the row path."""
    out = _strings(arr)
    return None if arr.type.scale > 6 and b"E" in _data(out) else out


def _numeric(arr, col):
    if not pa.types.is_decimal(arr.type) or encode._scale(col) != arr.type.scale:
        return None
    return decimal_text(arr)


def _is_text_type(kind):
    return pa.types.is_large_string(kind) or pa.types.is_string(kind)


def _is_text(arr):
    return _is_text_type(arr.type)


VECTORIZED = {
    "int": lambda arr, col: _strings(arr) if pa.types.is_integer(arr.type) else None,
    "bool": lambda arr, col: (pc.if_else(arr, pa.scalar("t", TEXT), pa.scalar("f", TEXT))
                              if pa.types.is_boolean(arr.type) else None),
    "uuid": lambda arr, col: pc.utf8_lower(_strings(arr)) if pa.types.is_large_string(arr.type) else None,
    "date": lambda arr, col: _strings(arr) if pa.types.is_date32(arr.type) else None,
    "timestamp": _timestamp,
    "timestamptz": _timestamptz,
    "time": _time,
    "numeric": _numeric,
}


def _by_value(arr, convert):
    """The row path's converter, value by value: where Arrow's text is not PostgreSQL's."""
    return pa.array([None if v is None else convert(v) for v in arr.to_pylist()], TEXT)


class BatchEncoder:
    """``encode(batch) -> (data, rows, checksum)``: one record batch as COPY text (each line ending
    in a newline) and, when asked, the checksum of its lines over every column read; the data
    leaves out the columns the destination generates. ``changed`` counts the values the U+0000
    policy changed, per column, as the row encoder's does; ``replacement`` says whether a text
    value of the last batch, as the driver returned it, held U+FFFD."""

    def __init__(self, table, nul="fail", nul_replacement="\ufffd"):
        if nul not in encode.NUL_POLICIES:
            raise ValueError(f"nul policy {nul!r} is not one of {', '.join(encode.NUL_POLICIES)}")
        self.table = table
        self.nul, self.nul_replacement = nul, nul_replacement
        self.changed = Counter()
        alone = len(table.columns) == 1
        self.converters = [encode.converter(c, alone=alone) for c in table.columns]
        self.keep = table.loaded_positions
        self._names = [c.name for c in table.columns]

    def column(self, i, arr):
        """The COPY text of column ``i``'s values (nulls kept as nulls)."""
        col = self.table.columns[i]
        if _is_text(arr):
            arr = _strings(arr)
            data = _data(arr)
            self.replacement = self.replacement or _replaced(data)
        if col.kind == "text" and _is_text(arr):
            if b"\x00" in data and pc.any(pc.match_substring(arr, "\x00")).as_py():
                arr = self._nul(i, arr)
                data = _data(arr)
            return _escaped(arr, data)
        vectorized = VECTORIZED.get(col.kind)
        out = vectorized(arr, col) if vectorized else None
        if out is not None:
            return out
        try:
            return _by_value(arr, self.converters[i])
        except encode.BadValue as exc:
            raise self._located(i, arr, exc) from None

    def finish(self):
        """The bytes that end the data after the last batch: none for COPY text or CSV."""
        return b""

    def _nul(self, i, out):
        if self.nul == "fail":
            row = pc.index(pc.match_substring(out, "\x00"), True).as_py()
            raise self._located(i, out, encode.BadValue(
                "text contains U+0000, which PostgreSQL cannot store (set [data] nul = strip or "
                "replace to change such values, counted in the report)"), row)
        hit = pc.match_substring(out, "\x00")
        self.changed[self.table.columns[i].name] += pc.sum(pc.cast(hit, pa.int64())).as_py() or 0
        return pc.replace_substring(out, "\x00", "" if self.nul == "strip" else self.nul_replacement)

    def _located(self, i, arr, exc, row=None):
        key = self.table.primary_key[0] if self.table.primary_key else None
        col = self.table.columns[i]
        where = "a row"
        if key and self._batch is not None and row is not None:
            where = f"{key}={self._batch.column(self._names.index(key))[row].as_py()}"
        elif key and self._batch is not None:
            values = arr.to_pylist()
            bad = next((n for n, v in enumerate(values) if v is not None and _fails(self.converters[i], v)), None)
            if bad is not None:
                where = f"{key}={self._batch.column(self._names.index(key))[bad].as_py()}"
        return DataError(f"{self.table.qualified} {where} column {col.name} ({col.source_type}): {exc}")

    _batch = None
    replacement = False

    def __call__(self, batch, checksum):
        """(data, rows, checksum or None) of one record batch, its columns in the table's order."""
        self._batch, self.replacement = batch, False
        try:
            texts = [pc.fill_null(self.column(i, batch.column(i)), NULL) for i in range(batch.num_columns)]
        finally:
            self._batch = None
        every = _lines(texts)
        total = lines_checksum(every) if checksum else None
        sent = every if len(self.keep) == len(texts) else _lines([texts[i] for i in self.keep])
        offsets = _offsets(sent)
        return memoryview(sent.buffers()[2])[offsets[0]:offsets[-1]], len(batch), total


# pyarrow's CSV writer quotes every string (so '' is not NULL, and no lone \\. ends the data) and
# writes NULL as an empty field: PostgreSQL's CSV
CSV_OPTIONS = pa_csv.WriteOptions(include_header=False)


# Arrow types whose CSV text PostgreSQL reads as the same value: integers, booleans (true/false),
# floats (shortest text that reads back as the same float), dates, decimals (digits, or an
# exponent PostgreSQL reads too)
def _as_is(kind):
    return (pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_floating(kind)
            or pa.types.is_date32(kind) or pa.types.is_decimal(kind))


class CsvBatchEncoder(BatchEncoder):
    """``encode(batch, False) -> (data, rows, None)``: one record batch as PostgreSQL CSV,
    written by pyarrow's CSV writer in C++ (a third of the cost of the COPY text), for a copy
    whose checksum both servers compute, so no line is hashed here. The columns the
    destination generates are left out. Times are cut to microseconds (a seventh digit
    dropped, as on the text path) and PostgreSQL rounds them to the column's precision, as SQL
    Server's side of the checksum does (mssql checksum.FROM_MSSQL). Bytes and sql_variant go
    value by value; text keeps the U+0000 policy and the U+FFFD watch of the text path."""

    def __init__(self, table, nul="fail", nul_replacement="\ufffd"):
        super().__init__(table, nul, nul_replacement)
        self.csv_converters = [encode.variant_json if c.kind == "variant" else
                               encode.csv_bytea if c.kind == "bytea" else conv
                               for c, conv in zip(table.columns, self.converters)]

    def csv_column(self, i, arr):
        """Column ``i`` as the CSV writer should print it."""
        kind = arr.type
        if _is_text(arr):
            arr = _strings(arr)
            data = _data(arr)
            self.replacement = self.replacement or _replaced(data)
            if b"\x00" in data and pc.any(pc.match_substring(arr, "\x00")).as_py():
                arr = self._nul(i, arr)
            if self.table.columns[i].kind != "variant":
                return arr
        elif pa.types.is_timestamp(kind):
            return pc.cast(arr, pa.timestamp("us", kind.tz), safe=False)
        elif pa.types.is_time(kind):
            return pc.cast(arr, pa.time64("us"), safe=False)
        elif _as_is(kind):
            return arr
        try:
            return _by_value(arr, self.csv_converters[i])
        except encode.BadValue as exc:
            raise self._located(i, arr, exc) from None

    def __call__(self, batch, checksum=False):
        if checksum:
            raise ValueError("the CSV encoder hashes no line: use BatchEncoder for a checksum")
        self._batch, self.replacement = batch, False
        try:
            columns = [self.csv_column(i, batch.column(i)) for i in self.keep]
        finally:
            self._batch = None
        out = pa.BufferOutputStream()
        pa_csv.write_csv(pa.record_batch(columns, names=[f"c{i}" for i in self.keep]), out, CSV_OPTIONS)
        return memoryview(out.getvalue()), len(batch), None


# PostgreSQL's binary COPY (pgpq encodes it in Rust): the destination's base type -> the Arrow
# type whose binary form is exactly that type's. Only types whose value the Arrow type holds
# whole: no typmod for PostgreSQL to apply but a timestamp's rounding and a varchar's length,
# which its binary input applies as its text input does.
BINARY_TYPES = {
    "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(), "bool": pa.bool_(),
    "float4": pa.float32(), "float8": pa.float64(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
    "text": TEXT, "varchar": TEXT, "bpchar": TEXT, "bytea": pa.large_binary(), "uuid": pa.binary(16),
    "numeric": None,        # the Arrow decimal as the driver gave it; PostgreSQL rounds it to the column's scale
}
# the Arrow type families each accepts from the driver, cast to the type above without loss
_FAMILIES = {
    "int2": pa.types.is_integer, "int4": pa.types.is_integer, "int8": pa.types.is_integer,
    "bool": pa.types.is_boolean, "float4": pa.types.is_floating, "float8": pa.types.is_floating,
    "date": pa.types.is_date32, "timestamp": lambda t: pa.types.is_timestamp(t) and t.tz is None,
    "text": _is_text_type, "varchar": _is_text_type, "bpchar": _is_text_type,
    "bytea": lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t),
    "uuid": _is_text_type,
    "numeric": lambda t: pa.types.is_decimal(t) and t.bit_width <= 128,      # pgpq has no Decimal256
}


def _span(arr):
    """The bytes of a large_string array's values back to back (of a slice, only its own)."""
    if not len(arr):
        return b""
    offsets = arr.buffers()[1]
    first, = struct.unpack_from("<q", offsets, arr.offset * 8)
    last, = struct.unpack_from("<q", offsets, (arr.offset + len(arr)) * 8)
    return memoryview(arr.buffers()[2])[first:last].tobytes()


def uuid_bytes(arr):
    """A column of uuids as text (mssql-python's uniqueidentifier: 36 characters, any case) as
    their 16 bytes in the text's order, which is PostgreSQL's binary uuid: the dashes dropped and
    the hex decoded over the whole column in C (0.05 us a value). A value of another form raises
    ValueError."""
    arr = _strings(arr)
    n = len(arr)
    filled = pc.fill_null(arr, "00000000-0000-0000-0000-000000000000") if arr.null_count else arr
    if n and pc.min_max(pc.binary_length(filled)).as_py() != {"min": 36, "max": 36}:
        raise ValueError("a uuid that is not 36 characters")
    data = _span(filled)
    if any(data[at::36] != b"-" * n for at in (8, 13, 18, 23)):
        raise ValueError("a uuid that is not 32 hex digits in 8-4-4-4-12")
    try:
        raw = binascii.unhexlify(data.translate(None, b"-"))
    except binascii.Error:
        raise ValueError("a uuid that is not 32 hex digits in 8-4-4-4-12") from None
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None     # a fresh bitmap, at offset 0
    return pa.Array.from_buffers(pa.binary(16), n, [validity, pa.py_buffer(raw)], arr.null_count)


def binary_types(table, type_names):
    """The destination's base type names (``type_names``: one a column, as dialects.base.type_name
    spells them) of the columns it loads, for PostgreSQL's binary COPY; None when a column's type
    is not one binary COPY carries here (see BINARY_TYPES)."""
    names = [type_names[i] for i in table.loaded_positions]
    if any(n not in BINARY_TYPES or table.columns[i].user_type or table.columns[i].kind == "variant"
           for i, n in zip(table.loaded_positions, names)):
        return None
    return names


def pgpq_missing():
    """Why the binary encoder cannot be used here, or None."""
    try:
        import pgpq  # noqa: F401
    except ImportError:
        return "pgpq is not installed (pip install -e '.[fast-mssql]')"
    return None


class BinaryBatchEncoder(CsvBatchEncoder):
    """``encode(batch) -> (data, rows, None)``: record batches as PostgreSQL's binary COPY,
    encoded by pgpq in Rust (a quarter to half the CPU of pyarrow's CSV writer, and PostgreSQL
    parses none of it), handed out in pieces of about 1 MB. Text keeps the U+0000 policy and the
    U+FFFD watch of the CSV encoder; times are cut to microseconds as there.

    The format is chosen at a partition's first batch: binary when every loaded column's
    destination type is one of BINARY_TYPES and its Arrow type one that casts to it without
    loss, else CSV for the whole partition. The data then starts with binary COPY's signature,
    by which the destination's COPY tells the two apart (``stream.binary_copy``). ``finish()``
    is the data's end (what pgpq still holds and binary COPY's trailer, or nothing)."""

    def __init__(self, table, type_names, nul="fail", nul_replacement="\ufffd"):
        super().__init__(table, nul, nul_replacement)
        self.types = binary_types(table, type_names)
        self._pgpq = None
        self.binary = None          # decided at the first batch

    def _fits(self, batch):
        return self.types is not None and all(
            _FAMILIES[name](batch.column(i).type) for i, name in zip(self.keep, self.types))

    def __call__(self, batch, checksum=False):
        if checksum:
            raise ValueError("the binary encoder hashes no line: use BatchEncoder for a checksum")
        if self.binary is None:
            self.binary = self._fits(batch)
        if not self.binary:
            return super().__call__(batch)
        self._batch, self.replacement = batch, False
        try:
            columns = [self.binary_column(i, name, batch.column(i)) for i, name in zip(self.keep, self.types)]
        finally:
            self._batch = None
        out = pa.record_batch(columns, names=[f"c{i}" for i in self.keep])
        head = b""
        if self._pgpq is None:
            import pgpq
            self._pgpq = pgpq.ArrowToPostgresBinaryEncoder(out.schema)
            head = self._pgpq.write_header()
        return head + self._pgpq.write_batch(out), len(batch), None

    def binary_column(self, i, name, arr):
        if name == "bytea":
            return pc.cast(arr, BINARY_TYPES[name])
        if name == "uuid":
            self.replacement = self.replacement or _replaced(_data(_strings(arr)))
            try:
                return uuid_bytes(arr)
            except ValueError as exc:
                raise self._located(i, arr, encode.BadValue(str(exc))) from None
        if name == "numeric":
            return arr
        return pc.cast(self.csv_column(i, arr), BINARY_TYPES[name], safe=name != "timestamp")

    def finish(self):
        """The bytes that end the data: binary COPY's trailer when it was binary."""
        return self._pgpq.finish() if self._pgpq is not None else b""


def _fails(convert, value):
    try:
        convert(value)
    except Exception:  # noqa: BLE001 -- only whether it fails
        return True
    return False


def _lines(texts):
    """One COPY line per row, each ending in a newline, in one contiguous buffer."""
    last = pc.binary_join_element_wise(texts[-1], pa.scalar("", TEXT), NEWLINE)
    return pc.binary_join_element_wise(*texts[:-1], last, TAB) if len(texts) > 1 else last


def _offsets(lines):
    """The lines' byte offsets in their data buffer, one more than there are lines."""
    return memoryview(lines.buffers()[1]).cast("q")[lines.offset:lines.offset + len(lines) + 1]


def lines_checksum(lines, newline=1):
    """encode.lines_checksum of the lines, each without its last ``newline`` bytes."""
    offsets = _offsets(lines).tolist()
    data = memoryview(lines.buffers()[2])
    md5, from_bytes = encode.md5, int.from_bytes
    return sum(from_bytes(md5(data[a:b - newline]).digest()[:8], "big", signed=True)
               for a, b in zip(offsets, offsets[1:]))
