#!/usr/bin/env python3
"""so_luigi against the machine's own COPY limit, on the same StackOverflow-shaped data.

    python scripts/benchmark.py --scale 0.1 --workers 2 [--repeat 3] [--quick] [--tables Posts]

Starts a PostgreSQL 15 cluster kept under .so_luigi/bench-pg (the generated source is reused
while scale and seed are unchanged), then, each into a fresh destination database with the same
table parallelism (--workers):

* raw limit: per table `psql COPY ... TO STDOUT | psql COPY ... FROM STDIN`, text and binary,
  then the primary key built and ANALYZE, as a hand-written pipeline would;
* ReplicateAll streaming and bulk (CSV files, and PostgreSQL binary COPY files), end to end,
  with full verification, with --verify count and with --verify tally (its cheapest setting);
* the row path (rows shaped like pymssql's: int, str, datetime, Decimal, bool, bytes, UUID, None)
  through the encoder into a real COPY, one core.

Prints per table and in total: seconds, rows/s, MB/s, peak RSS per worker, ratio to the raw
binary pipe; writes bench/results.json and bench/results.png. With --repeat N every method
runs N times, round by round, and each ratio is the median of the rounds' ratios: this machine's
speed drifts by 10% or more from one minute to the next, more than most changes being measured.
The rounds start after one raw binary pipe that is not counted, so the first finds the source in
the page cache as the others do.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import psycopg2  # noqa: E402

from so_luigi.dialects import destination  # noqa: E402
from so_luigi.dialects.postgres import types as pg_types
from so_luigi.testing import embedded, sample  # noqa: E402
from so_luigi.config import Endpoint, parse_url  # noqa: E402
from so_luigi.dialects.postgres import connection as pg_connection, ddl as pg_ddl  # noqa: E402

# Votes again under a uuid key: a table without an integer key, cut by heap block (ctid) ranges
UUID_TABLE = "VotesByUuid"
TABLES = sample.table_names() + [UUID_TABLE]
SELECTED = list(TABLES)     # what the methods copy (--tables); the source always holds them all


def select_tables(spec):
    """Copy only the comma-separated tables of ``spec`` (all when empty); unknown names stop here."""
    if not spec:
        return
    SELECTED[:] = [t.strip() for t in spec.split(",") if t.strip()]
    unknown = sorted(set(SELECTED) - set(TABLES))
    if unknown:
        raise SystemExit(f"--tables: no table {', '.join(unknown)} in the generated source "
                         f"(it has {', '.join(TABLES)})")


def query(url, sql, params=None):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def ensure_source(cluster, scale, seed):
    """The generated source, reused when its scale and seed are the ones asked for."""
    url = cluster.url("bench_source")
    if not query(cluster.url(), "SELECT 1 FROM pg_database WHERE datname = 'bench_source'"):
        query(cluster.url(), "CREATE DATABASE bench_source TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'")
    want = f"scale={scale} seed={seed} tables={','.join(TABLES)}"
    try:
        if query(url, "SELECT made FROM bench_meta") == [(want,)]:
            print(f"source: reusing {want}")
            settle(url)
            return url
    except psycopg2.Error:
        pass
    print(f"source: generating {want} ...", flush=True)
    started = time.monotonic()
    sample.fill(Endpoint(parse_url(url), "public", "source"), scale=scale, seed=seed)
    query(url, f'DROP TABLE IF EXISTS "{UUID_TABLE}"; '
               f'CREATE TABLE "{UUID_TABLE}" AS SELECT md5("Id"::text)::uuid AS "Uid", "PostId", "UserId", '
               f'"BountyAmount", "VoteTypeId", "CreationDate" FROM "Votes" ORDER BY "Id"; '
               f'ALTER TABLE "{UUID_TABLE}" ADD PRIMARY KEY ("Uid")')
    query(url, "DROP TABLE IF EXISTS bench_meta; CREATE TABLE bench_meta (made text); "
               "INSERT INTO bench_meta VALUES (%s)", (want,))
    settle(url)
    print(f"source ready in {time.monotonic() - started:.0f} s")
    return url


def settle(url):
    """VACUUM ANALYZE until every page is all-visible, as in a database that has been up a while:
    a VACUUM that overlaps autovacuum's ANALYZE of another table leaves the newest pages unmarked
    (a third of Posts, once), and index-only scans then visit the heap."""
    for _ in range(5):
        query(url, "VACUUM ANALYZE")
        left = query(url, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relallvisible < c.relpages")
        if left == [(0,)]:
            return
        time.sleep(1)


def fresh_db(cluster, name):
    return cluster.create_database(name)


def drop_db(cluster, name):
    """A measured copy is dropped at once: a few stale copies crowd the page cache and slow the
    next method by a third."""
    query(cluster.url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    quiesce(cluster)


def quiesce(cluster):
    """Start each method on a quiet machine: the server's dirty buffers checkpointed and the
    kernel's dirty pages written out, so no method pays for the writeback of the one before."""
    query(cluster.url(), "CHECKPOINT")
    os.sync()
    time.sleep(1)


def table_sizes(url):
    """Rows (counted: the planner's estimate moves with every ANALYZE) and bytes on disk."""
    sizes = query(url, "SELECT c.relname, pg_table_size(c.oid) FROM pg_class c "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                       "AND c.relkind = 'r' AND c.relname <> 'bench_meta'")
    return {name: {"rows": query(url, f'SELECT count(*) FROM "{name}"')[0][0], "bytes": int(b)}
            for name, b in sizes}


def client_cpu_seconds():
    """CPU seconds of this script's finished child processes (psql, or luigi and its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_cpu_seconds():
    """CPU seconds the whole machine has spent busy (all processes: servers, psql, so_luigi)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def raw_pipe(cluster, source_url, fmt, workers):
    """psql | psql per table, `workers` tables at a time, then keys and ANALYZE per table."""
    target = fresh_db(cluster, f"bench_raw_{fmt}")
    ddl = subprocess.run(["pg_dump", "--section=pre-data", "-T", "bench_meta", source_url],
                         capture_output=True, text=True, check=True).stdout
    subprocess.run(["psql", "-q", target], input=ddl, text=True, check=True, capture_output=True)
    post = subprocess.run(["pg_dump", "--section=post-data", "-T", "bench_meta", source_url],
                          capture_output=True, text=True, check=True).stdout.split(";\n")

    def one(table):
        started = time.monotonic()
        q = pg_connection.qualified("public", table)
        subprocess.run(f"psql -Atq {source_url!r} -c 'COPY {q} TO STDOUT (FORMAT {fmt})' | "
                       f"psql -q {target!r} -c 'COPY {q} FROM STDIN (FORMAT {fmt})'",
                       shell=True, check=True)
        keys = ";\n".join(s for s in post if f'"{table}"' in s or f" public.{table} " in s)
        subprocess.run(["psql", "-q", target], input=keys + f";\nANALYZE {q};", text=True, check=True,
                       capture_output=True)
        return table, time.monotonic() - started
    started, cpu, client = time.monotonic(), busy_cpu_seconds(), client_cpu_seconds()
    with ThreadPoolExecutor(workers) as pool:
        per_table = dict(pool.map(one, sorted(SELECTED, key=lambda t: -table_sizes_cache[t]["bytes"])))
    result = {"seconds": time.monotonic() - started, "tables": per_table, "peak_rss_mb": None,
              "cpu_seconds": busy_cpu_seconds() - cpu, "client_cpu_seconds": client_cpu_seconds() - client}
    drop_db(cluster, f"bench_raw_{fmt}")
    return result


def replicate(cluster, source_url, label, workers, args, env=None):
    target = fresh_db(cluster, f"bench_{label}")
    bulk_dir = os.path.join(ROOT, ".so_luigi", "bench-bulk")
    os.makedirs(bulk_dir, exist_ok=True)
    os.chmod(bulk_dir, 0o755)
    env = dict(os.environ, SO_SOURCE_URL=source_url, SO_TARGET_URL=target, SO_BULK_DIR=bulk_dir, **(env or {}))
    if SELECTED != TABLES:
        args = [*args, "--tables", ",".join(SELECTED)]
    started, wall, cpu, client = time.monotonic(), time.time(), busy_cpu_seconds(), client_cpu_seconds()
    out = subprocess.run([sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
                          "--workers", str(workers), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    cpu, client = busy_cpu_seconds() - cpu, client_cpu_seconds() - client
    if out.returncode != 0:
        raise SystemExit(f"{label} failed:\n{out.stderr[-3000:]}")
    figures = query(target, """
        SELECT l.table_name, sum(l.seconds), max(l.peak_kb),
               extract(epoch FROM max(t.completed_at) - min(l.loaded_at - l.seconds * interval '1 second'))
        FROM so_luigi.loaded l JOIN so_luigi.tables t ON t.run_id = l.run_id AND t.table_name = l.table_name
        GROUP BY 1""")
    result = {"seconds": seconds, "tables": {t: float(s) for t, s, _, _ in figures},
              "table_wall": {t: float(w) for t, _, _, w in figures},
              "table_peak_rss_mb": {t: int(k or 0) / 1024 for t, _, k, _ in figures},
              "peak_rss_mb": max(int(k or 0) for _, _, k, _ in figures) / 1024, "cpu_seconds": cpu,
              "client_cpu_seconds": client, "phases": phases(target, wall, seconds, workers)}
    drop_db(cluster, f"bench_{label}")
    return result


def phases(target, wall, seconds, workers):
    """Where a run's wall time went, from its markers' timestamps (same machine, same clock).
    Planning is that of the tables planned before the first row moved: a tiny table planned as
    its CopyTables copies it (load.copy_unplanned) is planned with its rows."""
    (plan0, plan1, load0, load1, busy, done1), = query(target, """
        WITH f AS (SELECT min(loaded_at - seconds * interval '1 second') AS first FROM so_luigi.loaded)
        SELECT extract(epoch FROM coalesce(min(t.planned_at) FILTER (WHERE t.planned_at <= f.first), f.first)),
               extract(epoch FROM coalesce(max(t.planned_at) FILTER (WHERE t.planned_at <= f.first), f.first)),
               extract(epoch FROM f.first),
               (SELECT extract(epoch FROM max(loaded_at)) FROM so_luigi.loaded),
               (SELECT sum(seconds) FROM so_luigi.loaded),
               extract(epoch FROM max(t.completed_at))
        FROM so_luigi.tables t, f GROUP BY f.first""")
    plan0, plan1, load0, load1, busy, done1 = map(float, (plan0, plan1, load0, load1, busy, done1))
    return {"start-up": plan0 - wall, "planning": plan1 - plan0, "loading": load1 - plan1,
            "completing": done1 - load1, "exit": wall + seconds - done1,
            "load busy %": 100 * busy / (workers * max(load1 - load0, 1e-9))}


def row_path(source_url, limit_rows):
    """Rows as pymssql hands them over, through the encoder into a real COPY, on one core."""
    from psycopg2.extras import register_uuid
    register_uuid()
    out = {}
    target_conn = psycopg2.connect(source_url)
    writer = destination(Endpoint(parse_url(source_url), "public", "target"))
    for name in [t for t in SELECTED if t != UUID_TABLE]:
        table = sample.table_def(name, "public")
        pg_types.map_table(table, "mssql")
        src = psycopg2.connect(source_url)
        with src.cursor() as cur:
            cur.execute(f"SELECT * FROM {pg_connection.qualified('public', name)} LIMIT %s", (limit_rows,))
            rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cur.fetchall()]
        src.close()
        scratch = table.name + "_rowpath"
        copy_table = typemap_copy(table, scratch)
        with target_conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {pg_connection.ident(scratch)}")
            cur.execute(pg_ddl.create_table_sql("public", copy_table))
            cpu = time.process_time()
            started = time.monotonic()
            count, nbytes = writer.copy_rows(cur, copy_table, iter(rows))
            seconds = time.monotonic() - started
            cpu = time.process_time() - cpu
            cur.execute(f"DROP TABLE {pg_connection.ident(scratch)}")
        target_conn.commit()
        out[name] = {"rows": count, "bytes": nbytes, "seconds": seconds, "cpu_seconds": cpu}
    target_conn.close()
    return out


def typemap_copy(table, name):
    import copy
    t = copy.deepcopy(table)
    t.name = name
    for c in t.columns:
        c.identity = False
    return t


def rounds_summary(runs):
    """One entry per method from its rounds: the median round's figures, plus every round's
    seconds and its ratio to the same round's raw binary pipe (median: ``ratio``)."""
    raw = [r["seconds"] for r in runs["raw binary pipe"]]
    methods = {}
    for label, results in runs.items():
        ratios = [r["seconds"] / base for r, base in zip(results, raw)]
        median = sorted(results, key=lambda r: r["seconds"])[(len(results) - 1) // 2]
        methods[label] = dict(median, rounds_seconds=[r["seconds"] for r in results], ratios=ratios,
                              ratio=statistics.median(ratios))
    return methods


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = list(results["methods"])
    seconds = [results["methods"][m]["seconds"] for m in labels]
    ratios = [results["methods"][m].get("ratio", 1.0) for m in labels]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.barh(labels, seconds, color=["#999999" if m.startswith("raw") else "#3b6ea5" for m in labels])
    for bar, s, ratio in zip(bars, seconds, ratios):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {s:.1f} s ({ratio:.2f}x)",
                va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds (lower is better)")
    ax.set_title(f"{results['rows']:,} rows, {results['mb']:.0f} MB, scale {results['scale']}, "
                 f"{results['workers']} at a time, PostgreSQL {results['server']}"
                 + (f"; median of {results['repeat']} rounds" if results.get("repeat", 1) > 1 else ""), fontsize=10)
    ax.set_xlim(0, max(seconds) * 1.35)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--row-path-rows", type=int, default=200_000, help="rows per table for the row path")
    p.add_argument("--out", default=os.path.join(ROOT, "bench"))
    p.add_argument("--quick", action="store_true",
                   help="raw binary pipe and streaming only, no chart; writes bench/quick-scale<N>.json")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of every method, interleaved: the machine's speed drifts by 10%% or more "
                        "between minutes, so a ratio is taken within each round and the median reported")
    p.add_argument("--tables", default="",
                   help="comma-separated subset to copy (the source still holds every table), e.g. Posts "
                        "for a scale whose whole copy would not fit the disk; a --quick run then writes "
                        "bench/quick-scale<N>-<tables>.json")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cluster = embedded.start("debian", workdir=os.path.join(ROOT, ".so_luigi", "bench-pg"))
    try:
        source = ensure_source(cluster, args.scale, args.seed)
        global table_sizes_cache
        table_sizes_cache = table_sizes(source)
        select_tables(args.tables)
        table_sizes_cache = {t: v for t, v in table_sizes_cache.items() if t in SELECTED}
        rows = sum(v["rows"] for v in table_sizes_cache.values())
        mb = sum(v["bytes"] for v in table_sizes_cache.values()) / 1e6
        server = query(source, "SHOW server_version")[0][0]
        quiesce(cluster)
        runs = {}           # method -> one result per round
        binary = {"SO_BULK_FORMAT": "binary"}
        plan = [(f"raw {fmt} pipe", lambda fmt=fmt: raw_pipe(cluster, source, fmt, args.workers))
                for fmt in ("binary", "text") if fmt == "binary" or not args.quick]
        for label, extra, env in (("streaming, full verify", [], {}),
                                  ("streaming, count only", ["--verify", "count"], {}),
                                  ("streaming, tally", ["--verify", "tally"], {}),
                                  ("bulk, full verify", ["--mode", "bulk"], {}),
                                  ("bulk, count only", ["--mode", "bulk", "--verify", "count"], {}),
                                  ("bulk binary, full verify", ["--mode", "bulk"], binary),
                                  ("bulk binary, count only", ["--mode", "bulk", "--verify", "count"], binary)):
            if not (args.quick and label.startswith("bulk")):
                plan.append((label, lambda label=label, extra=extra, env=env: replicate(
                    cluster, source, label.replace(", ", "_").replace(" ", "_"), args.workers, extra, env)))
        if args.repeat > 1:
            # the first method of a run can find the source out of the page cache (a test suite or
            # another copy in between): one raw pipe first, not counted, so round 1 is like the rest
            print("warm-up: raw binary pipe, not counted ...", flush=True)
            plan[0][1]()
        for round_ in range(args.repeat):
            for label, run in plan:
                print(f"{label} ..." + (f" (round {round_ + 1} of {args.repeat})" if args.repeat > 1 else ""),
                      flush=True)
                runs.setdefault(label, []).append(run())
        methods = rounds_summary(runs)
        rowpath = {}
        if not args.quick:
            print("row path ...", flush=True)
            rowpath = row_path(source, args.row_path_rows)
    finally:
        cluster.stop()
    results = {"scale": args.scale, "tables": SELECTED, "workers": args.workers, "rows": rows, "mb": mb,
               "server": server, "cpus": os.cpu_count(), "methods": methods, "row_path": rowpath,
               "repeat": args.repeat}
    print(f"\n{rows:,} rows, {mb:.0f} MB on disk, {args.workers} tables at a time, PostgreSQL {server}, "
          f"{os.cpu_count()} cores")
    if args.repeat > 1:
        print(f"{args.repeat} rounds, each method once per round in the same order; seconds are the median "
              "round's, ratios the median of each round's ratio to that round's raw binary pipe")
    print(f"{'method':<26} {'seconds':>8} {'rows/s':>10} {'MB/s':>7} {'peak RSS':>9} {'vs raw binary':>14} "
          f"{'busy CPU s':>11} {'of which client':>16}" + (f"  {'ratio per round':<24}" if args.repeat > 1 else ""))
    for name, m in methods.items():
        rss = f"{m['peak_rss_mb']:.0f} MB" if m["peak_rss_mb"] else "-"
        per_round = "  " + " ".join(f"{r:.2f}" for r in m["ratios"]) if args.repeat > 1 else ""
        print(f"{name:<26} {m['seconds']:>8.1f} {rows / m['seconds']:>10,.0f} {mb / m['seconds']:>7.1f} "
              f"{rss:>9} {m['ratio']:>13.2f}x {m.get('cpu_seconds', 0):>11.1f} "
              f"{m.get('client_cpu_seconds', 0):>16.1f}{per_round}")
    print("\nwhere ReplicateAll's wall seconds went (from the markers' timestamps)")
    for name, m in methods.items():
        if m.get("phases"):
            print(f"{name:<26} " + ", ".join(f"{k} {v:.1f}" for k, v in m["phases"].items()))
    print("\nper table: wall seconds (raw: its COPY, key and ANALYZE; ReplicateAll: its first partition's "
          "start to its complete marker, verification included) and summed partition load seconds")
    print(f"{'table':<11} {'method':<24} {'wall s':>7} {'rows/s':>10} {'MB/s':>7} {'peak RSS':>9} "
          f"{'vs raw binary':>14} {'load s':>7}")
    for t in sorted(SELECTED, key=lambda t: -table_sizes_cache[t]["bytes"]):
        size, base = table_sizes_cache[t], methods["raw binary pipe"]["tables"].get(t)
        for n, m in methods.items():
            w = m.get("table_wall", m["tables"]).get(t)
            if not w:
                continue
            rss = m.get("table_peak_rss_mb", {}).get(t)
            print(f"{t if n == 'raw binary pipe' else '':<11} {n:<24} {w:>7.2f} {size['rows'] / w:>10,.0f} "
                  f"{size['bytes'] / 1e6 / w:>7.1f} {f'{rss:.0f} MB' if rss else '-':>9} "
                  f"{w / base if base else 0:>13.2f}x {m['tables'].get(t, 0):>7.2f}")
    if {"Votes", UUID_TABLE} <= set(SELECTED):
        print(f"\nthe same rows under a uuid key ({UUID_TABLE}, cut by ctid ranges) against Votes (integer key), "
              "microseconds per row")
        for n, m in methods.items():
            w = m.get("table_wall", m["tables"])
            if w.get("Votes") and w.get(UUID_TABLE):
                us = [1e6 * w[t] / table_sizes_cache[t]["rows"] for t in ("Votes", UUID_TABLE)]
                print(f"{n:<26} Votes {us[0]:.2f} us/row, {UUID_TABLE} {us[1]:.2f} us/row ({us[1] / us[0]:.2f}x)")
    print("\nrow path (pymssql-shaped rows -> encoder -> COPY), one core; the raw text pipe's rows/s for "
          "the same table (its per-table seconds, keys and ANALYZE included) for comparison")
    text = methods.get("raw text pipe", {}).get("tables", {})
    for t, r in rowpath.items():
        rate = r["rows"] / r["seconds"]
        raw_rate = table_sizes_cache[t]["rows"] / text[t] if text.get(t) else None
        vs = (f"  raw text pipe {raw_rate:>9,.0f} rows/s: row path {raw_rate / rate:.2f}x its time per row"
              if raw_rate else "")
        r["raw_text_rows_per_s"] = raw_rate
        print(f"{t:<12} {r['rows']:>9,} rows {rate:>10,.0f} rows/s "
              f"{r['bytes'] / 1e6 / r['seconds']:>7.1f} MB/s  cpu {r['cpu_seconds']:.2f} s{vs}")
    if args.quick:      # kept beside the full run's figures, no chart
        subset = "-" + "-".join(SELECTED) if SELECTED != TABLES else ""
        rounds = f"-x{args.repeat}" if args.repeat > 1 else ""
        path = os.path.join(args.out, f"quick-scale{args.scale:g}{subset}{rounds}.json")
        with open(path, "w") as fh:
            json.dump(results, fh, indent=1)
        print(f"\nwrote {path}")
        return
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    chart(results, os.path.join(args.out, "results.png"))
    print(f"\nwrote {args.out}/results.json and results.png")


table_sizes_cache = {}

if __name__ == "__main__":
    main()
