"""Verification: a table in the destination compared with the source, the one way the first copy
(``load.complete_table``) and ``--sync`` (``sync.verify_table``) both judge it.

The figures of each side (row count, content checksum) are measured on both servers at once, as
the destination and the source agreed (``Destination.checksum_method``); ``judge`` compares them
with each other and with the loaded markers' counts, and names what differs.
"""
import threading
from dataclasses import dataclass

VERDICTS = {"full": "ok: count+checksum", "count": "ok: count only", "tally": "ok: count vs COPY tallies"}


@dataclass
class Judgement:
    """What verification found: the figures it compared, and ``problem`` (None when they agree)
    in words that start after the table's name."""
    rows: int                 # the destination's count (the COPY tallies' when it took no count)
    source_checksum: int
    target_checksum: int
    problem: str = None
    verdict: str = ""
    counts_differ: bool = False


def missing(partitions, loaded):
    """What is wrong when not every partition has its loaded marker, or None."""
    return None if loaded == partitions else f"{loaded} of {partitions} partitions loaded"


def judge(verify, partitions, loaded, rows, streamed_sum, source, target):
    """Compare ``source`` and ``target`` figures, each (count, checksum), with the loaded markers
    (``loaded`` of ``partitions`` partitions, ``rows`` rows, ``streamed_sum``: the checksum of the
    source's rows summed as they were read). A source checksum of None with full verification
    means the source's rows were hashed as they were read; a destination count of None means the
    loaded markers' rows stand for it (``--verify tally``)."""
    (src_count, src_sum), (dst_count, dst_sum) = source, target
    if src_sum is None and verify == "full":
        src_sum = streamed_sum
    tally = dst_count is None
    if tally:                       # the committed COPY counts stand for the destination's
        dst_count = rows
    found = Judgement(dst_count, src_sum, dst_sum, problem=missing(partitions, loaded))
    if found.problem:
        pass                        # the counts and checksums say nothing more then
    elif not src_count == dst_count == rows:
        found.problem = (f"row counts differ: source {src_count}, destination {dst_count}"
                         f"{' (its COPY tallies)' if tally else ''}, loaded markers {rows}")
        found.counts_differ = True
    elif verify == "full" and src_sum != dst_sum:
        found.problem = f"content checksum differs (source {src_sum}, destination {dst_sum}) over {dst_count} rows"
    found.verdict = VERDICTS["tally" if tally else "full" if verify == "full" else "count"]
    return found


def table_figures(src, dst, conn, verify):
    """``figures(table)``: ((source count, checksum), (destination count, checksum)), measured on
    both servers at once, as ``verify`` asks (see verify_and_finish)."""
    def figures(table):
        method = dst.checksum_method(src, table, conn) if verify == "full" else None
        counted = (lambda: (None, None)) if dst.tallies(table, verify) else \
            lambda: dst.figures(table, verify, method)
        return both_sides(lambda: src.figures(table, method), counted)
    return figures



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
