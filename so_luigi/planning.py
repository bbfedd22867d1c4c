"""Pure partition planning: table size and key boundaries -> keyset ranges.

Ranges are cut on the integer primary key at every ``chunk_rows``-th key in key order (a
ROW_NUMBER over the key computed by SQL Server; PostgreSQL walks the key's index instead, see
postgres.offset_boundaries), so each partition holds ``chunk_rows`` rows
however sparse the ids are. A range is ``(lo, hi]``; the first has no lower bound and the last no
upper bound, so together they cover every key exactly once, even keys added below the minimum or
above the maximum after planning.
"""


def boundaries_sql(quote, qualified_table, key, chunk_rows):
    """Keys closing each full chunk: the same SQL runs on SQL Server and PostgreSQL."""
    k, n = quote(key), int(chunk_rows)    # integer division: no '%' to clash with DB-API params
    return (f"SELECT k FROM (SELECT {k} AS k, ROW_NUMBER() OVER (ORDER BY {k}) AS rn "
            f"FROM {qualified_table}) numbered WHERE rn / {n} * {n} = rn ORDER BY k")


def plan(row_count, boundaries, chunk_rows):
    """Partition ranges of a table with ``row_count`` rows, given keys at every chunk_rows-th row."""
    cuts = [b for i, b in enumerate(boundaries, start=1) if i * chunk_rows < row_count]
    edges = [None] + cuts + [None]
    return list(zip(edges[:-1], edges[1:]))


def predicate(quote, key, lo, hi):
    """(SQL, params) selecting one range; values are always parameters, never interpolated."""
    k = quote(key)
    if lo is None and hi is None:
        return "", ()
    if lo is None:
        return f" WHERE {k} <= %s", (hi,)
    if hi is None:
        return f" WHERE {k} > %s", (lo,)
    return f" WHERE {k} > %s AND {k} <= %s", (lo, hi)
