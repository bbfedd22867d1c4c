"""What a table's steps share on either destination: claiming a partition under its marker
lock, measuring source and destination side by side, and completing a table (verification, the
finishing statements, the complete marker) in one transaction. ``load`` (PostgreSQL) and
``mssql_load`` (SQL Server) each call these with their own statements and figures.
"""
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from . import faults, markers
from .errors import VerificationError

log = logging.getLogger("luigi-interface.so_luigi")


def claim_partition(conn, cur, run_id, table_name, partition, progress=None):
    """(planned table, its partition count, lo, hi) of a partition, under the partition's lock in
    ``conn``'s transaction; None (the transaction rolled back) when another process, a second run
    on the same destination, loaded it meanwhile. Both destinations start a load with this."""
    table, partitions = markers.planned_table(conn, run_id, table_name)
    lo, hi, expected = markers.partition_range(conn, run_id, table_name, partition)
    if progress is not None:
        progress.expected = expected
    markers.lock(cur, run_id, table_name, partition)
    if markers.is_loaded(cur, run_id, table_name, partition):
        log.info("%s partition %d was loaded by another process meanwhile: skipped", table_name, partition)
        conn.rollback()
        return None
    return table, partitions, lo, hi


def both_sides(source_fn, target_fn):
    """Source and destination figures, computed at the same time on both servers."""
    figures = {}

    def measure(side, fn):
        try:
            figures[side] = fn()
        except BaseException as exc:  # noqa: BLE001 -- re-raised below in the caller's thread
            figures[side] = exc
    threads = [threading.Thread(target=measure, args=a) for a in (("source", source_fn), ("target", target_fn))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for side in ("source", "target"):
        if isinstance(figures[side], BaseException):
            raise figures[side]
    return figures["source"], figures["target"]


def verify_and_finish(conn, run_id, table_name, verify, figures, finish_steps, prepare=None):
    """Completing a table on either destination: all partitions loaded, counts (and checksums)
    equal on source, destination and markers, then the finishing statements and the complete
    marker in one transaction.

    ``figures(table)`` returns ((source count, checksum), (destination count, checksum)); a source
    checksum of None with full verification means the source's rows were checksummed as they were
    read (the sum is in the loaded markers). ``finish_steps(table, partitions)`` returns two lists
    of statements: the first runs in the finishing transaction while ``figures`` is computed on
    other connections (statements that let readers in, so the destination's verification scan
    can share its pass over the heap with them), the second after the figures agree. When the
    first is empty (SQL Server, unlogged and partitioned tables) the figures come first.
    ``prepare(table)``, when given, runs (and commits) first.
    """
    table, partitions = markers.planned_table(conn, run_id, table_name)
    cur = conn.cursor()
    loaded, rows, nbytes, streamed_sum = markers.loaded_totals(cur, run_id, table_name)
    conn.rollback()
    if loaded != partitions:
        raise VerificationError(f"{table_name}: {loaded} of {partitions} partitions loaded")
    if prepare is not None:
        prepare(table)
    beside, after = finish_steps(table, partitions)
    failed = None
    if beside:
        if not _claim_completion(conn, cur, run_id, table_name):
            return None
        with ThreadPoolExecutor(1, thread_name_prefix="so_luigi-verify") as pool:
            measured = pool.submit(figures, table)
            try:
                _finish(cur, beside)
            except Exception as exc:    # reported after the figures: differing counts say more
                conn.rollback()
                failed = exc
            (src_count, src_sum), (dst_count, dst_sum) = measured.result()
    else:
        (src_count, src_sum), (dst_count, dst_sum) = figures(table)
    if src_sum is None and verify == "full":
        src_sum = streamed_sum
    tally = dst_count is None
    if tally:                       # the committed COPY counts stand for the destination's
        dst_count = rows
    reset_hint = f"`so-luigi reset --run-id {run_id} --tables {table_name}` and run again"
    if not src_count == dst_count == rows:
        conn.rollback()
        raise VerificationError(
            f"{table_name}: row counts differ: source {src_count}, destination {dst_count}"
            f"{' (its COPY tallies)' if tally else ''}, "
            f"loaded markers {rows}; the source may have changed since planning: {reset_hint}")
    if verify == "full" and src_sum != dst_sum:
        conn.rollback()
        raise VerificationError(
            f"{table_name}: content checksum differs (source {src_sum}, destination {dst_sum}) "
            f"over {dst_count} rows: {reset_hint}; if it persists, report it with the table definition")
    if failed is not None:
        raise failed
    verdict = ("ok: count+checksum" if verify == "full" else
               "ok: count vs COPY tallies" if tally else "ok: count only")
    if not beside and not _claim_completion(conn, cur, run_id, table_name):
        return None
    _finish(cur, after, pause=not beside)
    markers.mark_complete(cur, run_id, table_name, dst_count, nbytes, src_sum, dst_sum, verdict)
    faults.pause("complete-commit")
    conn.commit()
    log.info("completed %s: %d rows, %s", table_name, dst_count, verdict)
    return verdict


def _claim_completion(conn, cur, run_id, table_name):
    """Take the table's marker lock in ``conn``'s transaction; False (rolled back) when another
    process completed the table meanwhile."""
    markers.lock(cur, run_id, table_name)
    if markers.is_complete(cur, run_id, table_name):
        conn.rollback()
        return False
    return True


def _finish(cur, statements, pause=True):
    """Run each statement (SQL text, or a function of the cursor for a step that reads first)."""
    for n, statement in enumerate(statements):
        if callable(statement):
            statement(cur)
        else:
            cur.execute(statement)
        if n == 0 and pause:
            faults.pause("index-build")
