"""What PostgreSQL tells of COPYs while they run (``pg_stat_progress_copy``): a bulk load's rows
so far, and every COPY into the destination for ``so-luigi status``."""

# rows a backend's COPY has processed so far
COPY_ROWS_SQL = "SELECT tuples_processed FROM pg_stat_progress_copy WHERE pid = %s"

# COPYs running now into the destination database, for ``so-luigi status``
IN_FLIGHT_SQL = """
SELECT n.nspname, c.relname, p.tuples_processed
FROM pg_stat_progress_copy p JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE p.datname = current_database() AND p.command = 'COPY FROM'
"""


def copy_rows(cur, pid):
    """Rows the COPY of backend ``pid`` has processed, or None when it runs none."""
    cur.execute(COPY_ROWS_SQL, (pid,))
    row = cur.fetchone()
    return int(row[0]) if row else None


def in_flight(cur, table_of):
    """[(table, rows)] of COPYs running now, each relation named by ``table_of(schema, relname)``
    (a partition's child table counts for its table); relations of no table are left out."""
    cur.execute(IN_FLIGHT_SQL)
    found = []
    for schema, relname, rows in cur.fetchall():
        table = table_of(schema, relname)
        if table is not None:
            found.append((table, int(rows)))
    return found
