"""The per-table summary printed at the end of a run and by `so-luigi report`."""
from . import markers


def render(conn, run_id, tables=None, source_ep=None, target_ep=None):
    rows = markers.report_rows(conn, run_id, tables)
    head = f"so_luigi run {run_id!r}"
    if source_ep and target_ep:
        head += f": {source_ep} -> {target_ep}"
    lines = [head,
             f"{'table':<20} {'rows':>12} {'MB':>10} {'seconds':>9} {'rows/s':>11} {'parts':>7}  verification"]
    total_rows = total_bytes = 0
    total_seconds = 0.0
    for name, partitions, loaded, nrows, nbytes, seconds, verdict, complete in rows:
        nrows, nbytes, seconds = int(nrows or 0), int(nbytes or 0), float(seconds or 0)
        total_rows += nrows
        total_bytes += nbytes
        total_seconds = max(total_seconds, seconds)
        rate = nrows / seconds if seconds else 0
        status = verdict if complete else "not complete"
        lines.append(f"{name:<20} {nrows:>12,} {nbytes / 1e6:>10.1f} {seconds:>9.1f} {rate:>11,.0f} "
                     f"{loaded:>3}/{partitions:<3}  {status}")
    lines.append(f"{'total':<20} {total_rows:>12,} {total_bytes / 1e6:>10.1f}")
    return "\n".join(lines)
