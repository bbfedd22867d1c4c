#!/usr/bin/env python3
"""What ``ReplicateAll --sync`` costs against copying everything again, on the same data.

    python scripts/sync_benchmark.py --scale 0.1 --workers 2 [--changed-pct 1]

Reuses scripts/benchmark.py's PostgreSQL cluster and generated source (.so_luigi/bench-pg), works
on a copy of that source (the copy is changed; the generated one is kept for the next run), and
measures, into one destination database:

1. the raw limit: ``psql COPY TO STDOUT | psql COPY FROM STDIN`` of every table, keys and ANALYZE;
2. ReplicateAll, streaming, full verification: the first copy;
3. ReplicateAll --sync with nothing changed;
4. ReplicateAll --sync after --changed-pct % of each table's partitions had one row updated, plus
   rows appended past the last key of Posts and Votes and a few Comments deleted, as a day of
   StackOverflow would;
5. the same changes once more, then a fresh full copy of the changed source (what a sync replaces).

Prints seconds, ratio to the raw pipe, peak RSS of the largest process (the luigi process or one
of its workers), partitions recopied and rows changed; writes bench/sync-scale<N>.json. The
destination is compared with the source table by table at the end (count and checksum of every
row), independently of so_luigi's own verification.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchmark as b  # noqa: E402  (scripts/benchmark.py: cluster, source, raw pipe)
from so_luigi.testing import embedded  # noqa: E402

# one row per chosen partition changed as StackOverflow changes it; tables not named here only
# grow or stay as they are
UPDATES = {"Posts": '"Score" = "Score" + 1', "Users": '"Reputation" = "Reputation" + 10',
           "Comments": '"Score" = "Score" + 1', "Votes": '"BountyAmount" = coalesce("BountyAmount", 0) + 50',
           "Badges": '"Name" = "Name" || \' (again)\''}
APPENDED = ("Posts", "Votes")     # new rows past the old last key: 0.1% of the table each
DELETED = {"Comments": 20}        # rows deleted from one partition


def measured(args, env):
    """Run a command; its seconds and the peak RSS (MB) of its largest process."""
    wrapper = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", wrapper, *args], cwd=b.ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args[-6:])} failed:\n{out.stderr[-3000:]}")
    return seconds, int(out.stderr.strip().splitlines()[-1]) / 1024, out.stdout + out.stderr


def replicate(source, target, workers, chunks, *extra):
    env = dict(os.environ, SO_SOURCE_URL=source, SO_TARGET_URL=target)
    return measured([sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
                     "--workers", str(workers), "--run-id", "bench-sync", *chunks, *extra], env)


def change(source, target, pct, round_):
    """Update one row in pct % of each table's partitions (at least one), append to Posts and
    Votes, delete a few Comments. Returns (partitions touched, rows changed)."""
    touched = rows = 0
    for table, assignment in UPDATES.items():
        ranges = b.query(target, "SELECT lo, hi FROM so_luigi.partitions WHERE run_id = 'bench-sync' "
                                 "AND table_name = %s ORDER BY partition", (table,))
        want = max(1, math.ceil(len(ranges) * pct / 100))
        step = len(ranges) / want
        for i in range(want):
            lo, hi = ranges[int(i * step + round_) % len(ranges)]
            got = b.query(source, f'UPDATE "{table}" SET {assignment} WHERE "Id" = (SELECT min("Id") FROM "{table}" '
                                  f'WHERE "Id" > %s AND (%s::bigint IS NULL OR "Id" <= %s)) RETURNING 1',
                          (lo if lo is not None else -2**62, hi, hi))
            touched += bool(got)
            rows += len(got or [])
    for table in APPENDED:
        cols = [c for c, in b.query(source, "SELECT column_name FROM information_schema.columns WHERE table_schema "
                                            "= 'public' AND table_name = %s ORDER BY ordinal_position", (table,))]
        listed = ", ".join(f'"{c}"' for c in cols)
        picked = ", ".join(f'"{c}" + m' if c == "Id" else f'"{c}"' for c in cols)
        got = b.query(source, f'WITH top AS (SELECT max("Id") AS m, count(*) AS n FROM "{table}") '
                              f'INSERT INTO "{table}" ({listed}) OVERRIDING SYSTEM VALUE SELECT {picked} FROM "{table}", top '
                              f'WHERE "Id" <= (SELECT min("Id") FROM "{table}") + n / 1000 RETURNING 1')
        rows += len(got or [])
    for table, n in DELETED.items():
        got = b.query(source, f'DELETE FROM "{table}" WHERE "Id" IN (SELECT "Id" FROM "{table}" '
                              f'ORDER BY "Id" OFFSET (SELECT count(*) / 2 FROM "{table}") LIMIT %s) RETURNING 1', (n,))
        rows += len(got or [])
    return touched, rows


def summary(output):
    """The sync report's last word: 'nothing to do ...' or 'N partition(s) recopied, M row(s) changed'."""
    return next((line.strip() for line in output.splitlines()
                 if "nothing to do" in line or "partition(s) recopied" in line), "")


def report(output):
    """The sync report's table, as ReplicateAll printed it."""
    lines = output.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("so_luigi run ")), None)
    return "\n".join(lines[first:first + 16]) if first is not None else output[-2000:]


def same(source, target):
    """Every table's count and row-checksum, computed the same way on both databases."""
    differ = []
    for (table,) in b.query(source, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                                    "AND table_type = 'BASE TABLE' AND table_name <> 'bench_meta'"):
        sql = f'SELECT count(*), sum(hashtextextended(t::text, 0)) FROM "{table}" t'
        if b.query(source, sql) != b.query(target, sql):
            differ.append(table)
    return differ


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--changed-pct", type=float, default=1.0, help="partitions of each table changed, in %%")
    p.add_argument("--chunk-mb", type=int, default=4,
                   help="partition size (ReplicateAll --chunk-mb): small, so that 1%% of a table's partitions "
                        "is a small part of it at a scale this machine can hold")
    p.add_argument("--chunk-rows", type=int, default=25000, help="ReplicateAll --chunk-rows")
    p.add_argument("--out", default=os.path.join(b.ROOT, "bench"))
    args = p.parse_args()
    cluster = embedded.start("debian", workdir=os.path.join(b.ROOT, ".so_luigi", "bench-pg"))
    chunks = ["--chunk-mb", str(args.chunk_mb), "--chunk-rows", str(args.chunk_rows)]
    results = {"scale": args.scale, "workers": args.workers, "chunk_mb": args.chunk_mb, "chunk_rows": args.chunk_rows, "changed_pct": args.changed_pct, "steps": {}}
    steps = results["steps"]
    try:
        b.ensure_source(cluster, args.scale, args.seed)
        b.table_sizes_cache.update(b.table_sizes(cluster.url("bench_source")))
        b.query(cluster.url(), 'DROP DATABASE IF EXISTS "bench_sync_source" WITH (FORCE)')
        b.query(cluster.url(), 'CREATE DATABASE "bench_sync_source" TEMPLATE "bench_source"')
        source = cluster.url("bench_sync_source")
        b.settle(source)
        results["rows"] = sum(v["rows"] for v in b.table_sizes_cache.values())
        results["mb"] = sum(v["bytes"] for v in b.table_sizes_cache.values()) / 1e6
        b.quiesce(cluster)

        print("raw binary pipe ...", flush=True)
        raw = b.raw_pipe(cluster, source, "binary", args.workers)
        steps["raw binary pipe"] = {"seconds": raw["seconds"]}

        b.query(cluster.url(), 'DROP DATABASE IF EXISTS "bench_sync" WITH (FORCE)')
        target = b.fresh_db(cluster, "bench_sync")

        def step(label, *extra, touched=None, changed=None):
            b.quiesce(cluster)
            print(f"{label} ...", flush=True)
            seconds, rss, output = replicate(source, target, args.workers, chunks, *extra)
            steps[label] = {"seconds": seconds, "peak_rss_mb": rss, "partitions_changed": touched,
                            "rows_changed": changed, "report": summary(output)}
            if "--sync" in extra:
                steps[label]["busy_seconds"] = busy = dict(b.query(target, """
                    SELECT CASE WHEN item LIKE 'partition %%' THEN 'partition ' || outcome ELSE split_part(item, ' ', 1)
                           END, round(sum(seconds)::numeric, 1)::float
                    FROM so_luigi.synced WHERE run_id = 'bench-sync'
                      AND generation = (SELECT max(generation) FROM so_luigi.syncs) GROUP BY 1"""))
                print("  seconds spent (summed over workers): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(busy.items())))
            if touched is not None:
                print(report(output), flush=True)
            if differ := same(source, target):
                raise SystemExit(f"{label}: destination differs from the source in {', '.join(differ)}")

        step("full copy (streaming, full verify)")
        partitions = b.query(target, "SELECT count(*) FROM so_luigi.partitions WHERE run_id = 'bench-sync'")[0][0]
        results["partitions"] = partitions
        step("sync, nothing changed", "--sync")
        for round_ in (1, 2):
            touched, changed = change(source, target, args.changed_pct, round_)
            step(f"sync after {args.changed_pct:g}% changed (round {round_})", "--sync",
                 touched=touched, changed=changed)
        b.query(cluster.url(), 'DROP DATABASE "bench_sync" WITH (FORCE)')
        target = b.fresh_db(cluster, "bench_sync")
        step("full copy again, of the changed source")
        b.query(cluster.url(), 'DROP DATABASE "bench_sync" WITH (FORCE)')
        b.query(cluster.url(), 'DROP DATABASE "bench_sync_source" WITH (FORCE)')
    finally:
        cluster.stop()

    base = steps["raw binary pipe"]["seconds"]
    print(f"\n{results['rows']:,} rows, {results['mb']:.0f} MB on disk in {partitions} partitions "
          f"(--chunk-mb {args.chunk_mb} --chunk-rows {args.chunk_rows}), "
          f"{args.workers} at a time, {os.cpu_count()} cores; every step's destination compared with the source "
          "(count and checksum per table) after it ran: equal")
    full = steps["full copy (streaming, full verify)"]["seconds"]
    print(f"{'step':<40} {'seconds':>8} {'vs raw':>7} {'vs copy':>8} {'peak RSS':>9} {'changed in the source':>32}")
    for label, s in steps.items():
        s["ratio"] = s["seconds"] / base
        s["ratio_to_full_copy"] = s["seconds"] / full
        rss = f"{s['peak_rss_mb']:.0f} MB" if s.get("peak_rss_mb") else "-"
        what = (f"{s['rows_changed']} rows ({s['partitions_changed']} partitions updated)"
                if s.get("partitions_changed") is not None else "")
        print(f"{label:<40} {s['seconds']:>8.1f} {s['ratio']:>6.2f}x {s['ratio_to_full_copy']:>7.2f}x {rss:>9} "
              f"{what:>32}")
        if s.get("report"):
            print(f"{'':<40} so_luigi said: {s['report']}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"sync-scale{args.scale:g}.json")
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
