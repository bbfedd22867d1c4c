"""Pure partition planning: table size and key boundaries -> keyset ranges.

A partition holds at most ``chunk_rows`` rows and about ``chunk_mb`` of the table on disk
(rows_per_partition): wide tables are cut by size, narrow ones by rows, so every partition is
worth its fixed cost (a process, two connections, a marker transaction). Ranges are cut on the
integer primary key at every step-th key in key order (a ROW_NUMBER over the key computed by SQL
Server; PostgreSQL walks the key's index instead, see postgres.offset_boundaries), so each
partition holds the same number of rows however sparse the ids are. A range is ``(lo, hi]``; the
first has no lower bound and the last no upper bound, so together they cover every key exactly
once, even keys added below the minimum or above the maximum after planning.
"""



def boundaries_sql(quote, qualified_table, key, chunk_rows):
    """Keys closing each full chunk: the same SQL runs on SQL Server and PostgreSQL."""
    k, n = quote(key), int(chunk_rows)    # integer division: no '%' to clash with DB-API params
    return (f"SELECT k FROM (SELECT {k} AS k, ROW_NUMBER() OVER (ORDER BY {k}) AS rn "
            f"FROM {qualified_table}) numbered WHERE rn / {n} * {n} = rn ORDER BY k")


def rows_per_partition(rows, table_bytes, chunk_rows, chunk_mb):
    """Rows in each partition: ``chunk_rows``, or fewer when that many rows of this table would
    take more than ``chunk_mb`` on disk. ``rows`` may be an estimate (it only sets the step; the
    cuts are exact); a table that fits in one chunk by size is cut by ``chunk_rows`` alone, so
    small tables plan the same whatever their statistics say."""
    by_size = -(-int(table_bytes or 0) // (int(chunk_mb) << 20)) if chunk_mb else 1
    if by_size <= 1 or not rows:
        return chunk_rows
    # 2% over the estimate: statistics a little low would otherwise leave a last partition of a
    # few rows that costs as much to schedule as a full one
    return max(1, min(chunk_rows, -(-int(rows) * 102 // (100 * by_size))))


def plan(row_count, boundaries, chunk_rows):
    """Partition ranges of a table with ``row_count`` rows, given keys at every chunk_rows-th row."""
    cuts = [b for i, b in enumerate(boundaries, start=1) if i * chunk_rows < row_count]
    edges = [None] + cuts + [None]
    return list(zip(edges[:-1], edges[1:]))


def surely_one(estimate, step):
    """Whether a table of ``estimate`` rows (the planner's) is one partition of ``step`` beyond
    doubt: within half of it. An estimate of 0 may be no statistics at all."""
    return estimate is not None and 0 < estimate <= step // 2


# A table estimated at this many rows or more is cut from its key's statistics when they are
# fresh, instead of walked or numbered: an exact cut reads the whole key (PostgreSQL's walk of
# Votes, 10.1M rows: 0.85 s; SQL Server numbers every row), before the first load can start. A
# cut from the histogram costs milliseconds and comes within a few percent of equal partitions.
STATISTICS_FROM_ROWS = 1_000_000


def cdf_cuts(points, step, total):
    """Keys cutting about ``total`` rows into chunks of ``step``, from the key's distribution as
    statistics estimate it: ``points`` are (key, rows with a key up to it) in key order, linear
    in between. Integer keys, strictly increasing: no range is empty by construction, and the
    ranges between them still cover every key once, whatever the statistics got wrong."""
    found, j = [], 0
    for i in range(1, -(-int(total) // int(step))):
        target = i * step
        while j < len(points) - 1 and points[j][1] < target:
            j += 1
        (k0, c0), (k1, c1) = points[max(j - 1, 0)], points[j]
        key = k1 if c1 <= c0 or c1 < target else k0 + int((target - c0) * (k1 - k0) // (c1 - c0))
        if not found or key > found[-1]:
            found.append(key)
    return found


def point_cuts(keys, counts, step, total):
    """Keys cutting about ``total`` rows into chunks of ``step`` where no key can be interpolated
    (text, a uuid, a date): at the statistics' own points, ``keys`` in order with ``counts`` the
    rows up to and with each, the first point reaching each multiple of ``step``; never the last
    point (the rest is the last range) and never a point twice."""
    found, j = [], 0
    for i in range(1, -(-int(total) // int(step))):
        while j < len(keys) - 1 and counts[j] < i * step:
            j += 1
        if j < len(keys) - 1 and (not found or found[-1] != j):
            found.append(j)
    return [keys[j] for j in found]


def ranged(select, quote, key, lo, hi):
    """``select`` limited to the key range (lo, hi]: (SQL, params), params None when the whole
    table is read. Values are always parameters, never interpolated. With parameters, a '%' in
    a quoted name is doubled: psycopg2 and pymssql read every '%' as the start of a placeholder."""
    if key is None or (lo is None and hi is None):
        return select, None
    k = _percent_safe(quote(key))
    if lo is None:
        where, params = f" WHERE {k} <= %s", (hi,)
    elif hi is None:
        where, params = f" WHERE {k} > %s", (lo,)
    else:
        where, params = f" WHERE {k} > %s AND {k} <= %s", (lo, hi)
    return _percent_safe(select) + where, params


def _percent_safe(sql):
    """'%' doubled: the drivers read it as a placeholder when parameters are passed (as
    dialects.base.percent_safe; planning imports nothing of the dialects, which import it)."""
    return sql.replace("%", "%%")
