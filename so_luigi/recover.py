"""A lost source snapshot, recovered without a person: what was read at it is proven at a new one.

When the snapshot a run reads at is gone (its holder's session ended: an administrator, a
failover, a pooler restart, an idle timeout), the run takes a new one (``snapshot.ensure`` on a
rerun, ``renew`` inside a run) and every partition and table read at the old one is *stale*:
its marker names the old snapshot (``loaded.snapshot``, ``tables.snapshot``), so its task is
not done. Its task then proves it at the new moment the way ``--sync`` proves a range:

* ``prove_partition``: the source's count and checksum of the range at the new snapshot against
  the destination's; equal, the marker moves to the new snapshot (``proven = 'same'``), else the
  range is recopied in one transaction (``proven = 'recopied'``, sync.recopy);
* ``reverify_table``: a table completed at the old snapshot is verified again at the new one
  (its sequences moved past its rows), its figures and marker moved to it.

A table cut by heap position (``cut == "ctid"``) has no key range to prove: it is proven whole
and, where it differs, recopied whole as one partition. Bulk files extracted at the old snapshot are never loaded (their manifest names
it): they are extracted again. The copy is then consistent as of the new snapshot, and the
report says how many partitions were proven and recopied.
"""
import logging
import time

from . import load, snapshot
from .errors import VerificationError
from .load import _finish, endpoints
from .state import markers
from .sync import compare_range, judged, planned_range, recopy

log = logging.getLogger("luigi-interface.so_luigi")


def prove_partition(run_id, table_name, partition, buffer_mb, progress=None):
    """A partition loaded at a lost snapshot, compared with the source at the run's: stats of
    the recopy, None when it was equal (or another process proved it meanwhile)."""
    src, dst = endpoints(run_id)
    started = time.monotonic()
    buffer_bytes = int(buffer_mb * 1024 * 1024)
    table, partitions, lo, hi, method, _ = planned_range(src, dst, run_id, table_name, partition)
    whole = table.cut == "ctid"         # its ranges of heap blocks hold other rows at another snapshot
    if whole:
        lo = hi = None
    rows, same = compare_range(src, dst, table, lo, hi, method, buffer_bytes)

    def claim(conn, cur):
        markers.lock(cur, run_id, table_name, "whole" if whole else partition)
        if markers.loaded_state(cur, run_id, table_name, partition) == "stale":
            return True
        conn.rollback()
        return False
    if same:
        with dst.session() as conn:
            cur = conn.cursor()
            if not claim(conn, cur):
                return None
            markers.mark_proven(cur, run_id, table_name, None if whole else partition, src.snapshot)
            conn.commit()
        log.info("%s partition %d: read at a lost snapshot, proven equal to the source at %s (%d rows)",
                 table_name, partition, src.snapshot, rows)
        return None
    if progress is not None:
        progress.expected = rows
    done = recopy(src, dst, run_id, table, partitions, partition, lo, hi, buffer_bytes, progress, started, claim,
                  lambda cur, written, changes: None, proven="recopied")
    if done is None:
        return None
    return {"rows": done[0], "bytes": 0, "seconds": time.monotonic() - started}


def reverify_table(run_id, table_name, verify="full"):
    """A table completed at a lost snapshot, its partitions proven at the run's: verified again
    there, as after a full copy, its sequences moved past its rows, its figures and marker
    moved to the new snapshot."""
    src, dst = endpoints(run_id)
    with dst.session() as conn:
        cur = conn.cursor()
        table, nbytes, found = judged(src, dst, conn, run_id, table_name, verify)
        if found.problem:
            raise VerificationError(f"{table_name}, verified again at a new source snapshot: {found.problem}; "
                                    f"`so-luigi reset --run-id {run_id} --tables {table_name}` and run again")
        steps = dst.sequence_steps(table, src.sequence_positions(table))
        markers.lock(cur, run_id, table_name)
        _finish(cur, steps, pause=False)
        markers.update_figures(cur, run_id, table_name, found.rows, nbytes, found.source_checksum,
                               found.target_checksum, found.verdict, src.snapshot)
        conn.commit()
    log.info("%s verified again at source snapshot %s: %d rows, %s", table_name, src.snapshot, found.rows,
             found.verdict)
    return found.verdict


def complete_table(run_id, table_name, verify="full", buffer_mb=256):
    """load.complete_table, after proving the table's partitions read at a source snapshot lost
    since they were loaded (the scheduler saw them done before); a table completed at such a
    snapshot is verified again at the run's instead."""
    _, dst = endpoints(run_id)
    with dst.session() as conn:
        cur = conn.cursor()
        again = markers.is_complete(cur, run_id, table_name)
        lost = [p for p, state in sorted(markers.loaded_states(cur, run_id, table_name).items()) if state == "stale"]
        conn.rollback()
    for p in lost:
        prove_partition(run_id, table_name, p, buffer_mb)
    if again:
        return reverify_table(run_id, table_name, verify)
    return load.complete_table(run_id, table_name, verify)


def renew(run_id, lost):
    """Inside a run, a task met the loss of snapshot ``lost``: the run's snapshot from now on (a
    new one when no other process of the run has taken one yet)."""
    src, dst = endpoints()
    return snapshot.replace_lost(run_id, src, dst, lost, load.unplanned_names(run_id))
