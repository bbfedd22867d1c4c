"""The per-table summary printed at the end of a run and by `so-luigi report`, and the progress
`so-luigi status` prints, both read from the marker tables."""
from .config import target_endpoint
from .dialects import destination
from .dialects.base import NOT_COPIED
from .state import markers


def render(conn, run_id, tables=None, source_ep=None, target_ep=None):
    return summary(conn, run_id, tables, source_ep, target_ep)[0]


def summary(conn, run_id, tables=None, source_ep=None, target_ep=None):
    """(the report's text, its lines naming each object not carried)."""
    rows = markers.report_rows(conn, run_id, tables)
    head = f"so_luigi run {run_id!r}"
    if source_ep and target_ep:
        head += f": {source_ep} -> {target_ep}"
    w = max([20] + [len(r[0]) for r in rows])
    lines = [head,
             f"{'table':<{w}} {'rows':>12} {'MB':>10} {'seconds':>9} {'rows/s':>11} {'parts':>7}  verification"]
    total_rows = total_bytes = 0
    total_seconds = 0.0
    for name, partitions, loaded, nrows, nbytes, seconds, verdict, complete, changed in rows:
        nrows, nbytes, seconds = int(nrows or 0), int(nbytes or 0), float(seconds or 0)
        total_rows += nrows
        total_bytes += nbytes
        total_seconds = max(total_seconds, seconds)
        rate = nrows / seconds if seconds else 0
        status = verdict if complete else "not complete"
        if changed:
            status += f"; {int(changed):,} values with U+0000 changed ([data] nul)"
        lines.append(f"{name:<{w}} {nrows:>12,} {nbytes / 1e6:>10.1f} {seconds:>9.1f} {rate:>11,.0f} "
                     f"{loaded:>3}/{partitions:<3}  {status}")
    lines.append(f"{'total':<{w}} {total_rows:>12,} {total_bytes / 1e6:>10.1f}")
    said = markers.source_reading(conn, run_id)[1]
    if said:
        lines.append(f"source: {said}")
    same, recopied = markers.proven_counts(conn, run_id)
    if same or recopied:
        lines.append(f"recovered from a lost source snapshot: {same} partition(s) proven equal to the source at the "
                     f"new one, {recopied} recopied")
    schema, missing = schema_lines(conn, run_id, [r[0] for r in rows])
    return "\n".join(lines + schema), missing


LEFT_OUT = "left out: "      # why an object was not carried because the user asked (--no-constraints)


def not_carried(missing):
    """Of the report's lines naming an object not carried (``summary``), those nobody asked to
    leave out (--no-constraints, or a selection leaving out a key's table): the copy is complete
    when there are none."""
    return [line for line in missing if LEFT_OUT not in line and NOT_COPIED not in line]


def schema_lines(conn, run_id, names):
    """What became of each table's indexes and constraints: (lines saying how many the copy
    carries, how its foreign keys stand and every object it does not carry, with the reason;
    those naming an object not carried)."""
    dst = destination(target_endpoint())
    carried, keys, missing = 0, {"valid": 0, "not valid": 0, None: 0}, []
    planned = markers.planned_tables(conn, run_id)
    for name in names:
        if name not in planned:
            raise markers.not_planned(run_id, name)
        table = planned[name]
        carried += len(table.indexes) + len([c for c in table.constraints if c.kind != "foreign_key"])
        missing += [f"  {name}: {what}: {why}" for what, why in table.not_carried]
        for fk in table.foreign_keys:
            if table.referenced(fk, names) is None:
                missing.append(f"  {name}: foreign key {fk.name}: references {fk.ref_schema}.{fk.ref_table}, {NOT_COPIED}")
            else:
                with conn.cursor() as cur:
                    keys[dst.constraint_state(cur, table, fk.name)] += 1
    conn.rollback()
    missing += [f"  {kind} {name}: {why}" for kind, name, why in markers.objects(conn, run_id)]
    lines = []
    if carried or any(keys.values()):
        fk_words = f"; foreign keys: {keys['valid']} validated" if any(keys.values()) else ""
        if keys["not valid"]:
            fk_words += f", {keys['not valid']} NOT VALID"
        if keys[None]:
            fk_words += f", {keys[None]} still to add"
        lines.append(f"schema: {carried} indexes and constraints besides the keys{fk_words}")
    if missing:
        lines.append(f"not carried ({len(missing)}):")
        lines += missing
    return lines, missing


def _eta(seconds):
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


STATUS_TABLES = 40      # more tables than this: the complete ones are counted, not listed (but with every)


def status(conn, run_id, every=False):
    """Per-table progress of a run from the markers (and COPYs in flight), while it runs or after.
    A run of more than STATUS_TABLES tables lists those not complete and counts the rest by
    verdict, unless ``every``."""
    with conn.cursor() as cur:
        tables = markers.status_rows(cur, run_id)
        # none from SQL Server: a bulk copy's rows are not visible
        flying = destination(target_endpoint()).rows_in_flight(cur, [t[0] for t in tables])
    if not tables:
        return f"run {run_id!r}: nothing planned yet"
    w = max([20] + [len(t[0]) for t in tables])
    lines = [f"so_luigi run {run_id!r}",
             f"{'table':<{w}} {'parts':>9} {'rows':>24} {'MB':>9} {'rows/s':>10} {'ETA':>8}  state"]
    total_done = total_rows = 0
    brief = not every and len(tables) > STATUS_TABLES
    unlisted = {}
    for name, parts, src_rows, complete, verdict, done, rows, nbytes, elapsed, seconds in tables:
        rows, nbytes, src_rows = int(rows), int(nbytes), int(src_rows)
        inflight = sum(n for table, n in flying if table == name)
        moving = rows + inflight
        rate = moving / float(elapsed) if elapsed and moving else 0.0
        if complete:                  # planned rows may be the planner's estimate; these are counted
            state, eta, src_rows = verdict, None, rows
            rate = rows / float(seconds) if seconds else rate
        elif done == parts:
            state, eta = "verifying", 0
        else:
            state = f"loading ({inflight:,} rows in flight)" if inflight else "waiting"
            eta = (src_rows - moving) / rate if rate else None
        total_done += rows
        total_rows += src_rows
        if brief and complete:
            unlisted[verdict] = unlisted.get(verdict, 0) + 1
            continue
        lines.append(f"{name:<{w}} {done:>4}/{parts:<4} {moving:>11,}/{src_rows:<12,} {nbytes / 1e6:>9.1f} "
                     f"{rate:>10,.0f} {_eta(eta):>8}  {state}")
    if unlisted:
        lines.append(f"and {sum(unlisted.values()):,} complete tables not listed ("
                     + ", ".join(f"{n:,} {verdict}" for verdict, n in sorted(unlisted.items()))
                     + "; --all lists every table)")
    pct = 100.0 * total_done / total_rows if total_rows else 100.0
    lines.append(f"{'total':<{w}} {'':>9} {total_done:>11,}/{total_rows:<12,} committed: {pct:.1f}% "
                 f"of {len(tables):,} tables, {len(tables) - sum(1 for t in tables if t[3]):,} not complete")
    return "\n".join(lines)
