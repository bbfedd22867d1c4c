#!/usr/bin/env python3
"""so_luigi with SQL Server on either side, beside PostgreSQL -> PostgreSQL on the same data.

    python scripts/mssql_benchmark.py --mssql mssql://user:pw@127.0.0.1:1433/master --scale 0.1 [--workers 2]

Starts a PostgreSQL cluster (as scripts/benchmark.py does), generates the StackOverflow-shaped
sample into it, then, each with the same parallelism (--workers tables or partitions at a time):

* PostgreSQL -> PostgreSQL: the raw binary pipe (psql COPY TO | COPY FROM, keys, ANALYZE) and
  ReplicateAll with full verification;
* PostgreSQL -> SQL Server: ReplicateAll, and the raw limit of that direction: pymssql's bulk copy
  of the same rows into tables already typed as so_luigi types them (no verification, no keys),
  and ``freebcp in`` (FreeTDS's bulk copy in C, where Debian's freetds-bin is installed) of the
  same rows from files PostgreSQL wrote beforehand;
* SQL Server -> PostgreSQL: ReplicateAll from the SQL Server copy the previous step made, its
  rows read through mssql-python's Arrow batches where so_luigi[fast-mssql] is installed, and
  again through pymssql (the URL's driver=pymssql) to compare;
* SQL Server read alone: every table of that copy read through one connection of each driver
  installed (pymssql; mssql-python's fetchmany and its Arrow batches), the rows dropped.

Client us/row is the client processes' CPU per row copied (or read): what issue 33 item 2 asks
to bring within 2x of the fastest reader measured on the same rows.

Prints seconds, rows/s, MB/s (of the source's table size in PostgreSQL), and where the CPU went:
this machine's busy CPU seconds split into the client processes (luigi and its workers, or the
raw bulk copy) and the rest (the database servers). Figures only: nothing here is a test.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import benchmark as bench  # noqa: E402

from so_luigi.testing import embedded  # noqa: E402
from so_luigi.config import Endpoint, parse_url  # noqa: E402
from so_luigi.dialects.mssql import bulk as ms_bulk, connection as ms_connection
from so_luigi.dialects.postgres import catalog as pg_catalog, connection as pg_connection
from so_luigi.dialects.mssql import ddl as ms_ddl, fast


def mssql_admin(url, sql):
    p = parse_url(url)
    conn = ms_connection.connect(Endpoint(p, "dbo", "target"), autocommit=True)
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def mssql_database(base_url, name):
    mssql_admin(base_url, f"CREATE DATABASE [{name}]")
    parts = urlsplit(base_url)                 # the query (TLS and the like) kept
    return urlunsplit(parts._replace(path="/" + name))


def timed(fn):
    started, cpu, client = time.monotonic(), bench.busy_cpu_seconds(), bench.client_cpu_seconds()
    fn()
    return {"seconds": time.monotonic() - started, "cpu_seconds": bench.busy_cpu_seconds() - cpu,
            "client_cpu_seconds": bench.client_cpu_seconds() - client}     # as bench.raw_pipe names them


def luigi(source_url, target_url, workers, verify="full"):
    import subprocess
    env = dict(os.environ, SO_SOURCE_URL=source_url, SO_TARGET_URL=target_url)
    out = subprocess.run([sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
                          "--workers", str(workers), "--verify", verify], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"ReplicateAll {parse_url(source_url)} -> {parse_url(target_url)} failed:\n"
                         f"{out.stderr[-3000:]}")


def bulk_one(args):
    """One table's rows from PostgreSQL through pymssql's bulk copy into its typed table: the
    limit of the PostgreSQL -> SQL Server direction (in a child process, as luigi's workers are)."""
    source_url, target_url, name = args
    source_ep = Endpoint(parse_url(source_url), "public", "source")
    target_ep = Endpoint(parse_url(target_url), "dbo", "target")
    src = pg_connection.connect(source_ep)
    table = pg_catalog.describe(src, "public", name)
    dst = ms_connection.connect(target_ep, autocommit=False)
    cur = dst.cursor()
    cur.execute(ms_ddl.create_table_sql("dbo", table, "postgres"))
    read = src.cursor(name="bench")
    read.itersize = 5000
    read.execute(f"SELECT * FROM {pg_connection.qualified('public', name)}")
    if table.identity_columns:
        cur.execute(f"SET IDENTITY_INSERT {ms_connection.qualified('dbo', name)} ON")
    rows = (tuple(ms_bulk.bulk_value(v) if v is not None else None for v in row) for row in read)
    dst.bulk_copy(ms_connection.qualified("dbo", name), rows, batch_size=5000, tablock=True)
    dst.commit()
    dst.close()
    src.close()


def raw_bulk_copy(source_url, target_url, workers):
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(bulk_one, [(source_url, target_url, t) for t in
                                 sorted(bench.TABLES, key=lambda t: -bench.table_sizes_cache[t]["bytes"])]))


def bcp_file(source_url, name, folder):
    """The table's rows as freebcp's character format: fields ended by U+001F, rows by a
    newline, NULL empty (PostgreSQL's COPY text, which escapes a backslash, a tab or a newline in
    a value: the loaded text then differs, the work per row does not)."""
    path = os.path.join(folder, f"{name}.dat")
    src = pg_connection.connect(Endpoint(parse_url(source_url), "public", "source"))
    with open(path, "wb") as fh, src.cursor() as cur:
        cur.copy_expert(f"COPY {pg_connection.qualified('public', name)} TO STDOUT "
                        "(FORMAT text, DELIMITER E'\\x1f', NULL '')", fh)
    src.close()
    return path


def freebcp_in(args):
    """``freebcp ... in`` of one table's file into its typed table (FreeTDS's C bulk copy, one
    connection, TABLOCK, 5,000 rows a batch): what the fastest writer costs the client a row."""
    target_url, name, path, identity = args
    u = parse_url(target_url)
    out = subprocess.run(["freebcp", f"dbo.{name}", "in", path, "-S", f"{u.host}:{u.port or 1433}", "-D", u.database,
                    "-U", u.user, "-P", u.password, "-c", "-t", "\x1f", "-r", "\n", "-b", "5000",
                    "-h", "TABLOCK"] + (["-E"] if identity else []), capture_output=True, text=True)
    if out.returncode != 0 or "rows copied" not in out.stdout:
        raise SystemExit(f"freebcp in {name} failed: {(out.stdout + out.stderr)[-1500:]}")


def freebcp_all(source_url, target_url, workers, folder):
    """Every table through freebcp_in, ``workers`` at a time; the files are written first (by
    PostgreSQL, not timed) and the tables created empty. Returns timed()'s figures."""
    target_ep = Endpoint(parse_url(target_url), "dbo", "target")
    src = pg_connection.connect(Endpoint(parse_url(source_url), "public", "source"))
    dst = ms_connection.connect(target_ep, autocommit=True)
    names = sorted(bench.TABLES, key=lambda t: -bench.table_sizes_cache[t]["bytes"])
    identity = {}
    for name in names:
        table = pg_catalog.describe(src, "public", name)
        identity[name] = bool(table.identity_columns)
        dst.cursor().execute(ms_ddl.create_table_sql("dbo", table, "postgres"))
    src.close()
    dst.close()
    files = [bcp_file(source_url, n, folder) for n in names]
    return timed(lambda: list(ThreadPoolExecutor(workers).map(
        freebcp_in, [(target_url, n, f, identity[n]) for n, f in zip(names, files)])))


def read_all(args):
    """Every table of a SQL Server database read through one connection of ``driver``, the rows
    dropped: what the driver alone costs the client a row (in a child process, so its CPU is
    counted with the others'). ``pymssql`` (so_luigi's driver), ``mssql-python`` (fetchmany) or
    ``mssql-python-arrow`` (Arrow record batches, ``cursor.arrow_reader``)."""
    url, driver, tables = args
    u = parse_url(url)
    if driver == "pymssql":
        conn = ms_connection.connect(Endpoint(u, "dbo", "source"))
    else:
        import mssql_python
        conn = mssql_python.connect(fast.connection_string(u, "no"))
    cur = conn.cursor()
    for name in tables:
        cur.execute(f"SELECT * FROM {ms_connection.qualified('dbo', name)}")
        if driver == "mssql-python-arrow":
            for _ in cur.arrow_reader(batch_size=5000):
                pass
        else:
            while cur.fetchmany(5000):
                pass
    conn.close()


def readers():
    """The drivers read_all can use here: pymssql always, mssql-python (with pyarrow) when installed."""
    found = ["pymssql"]
    try:
        import mssql_python  # noqa: F401
        found.append("mssql-python")
        import pyarrow  # noqa: F401
        found.append("mssql-python-arrow")
    except ImportError:
        pass
    return found


def in_child(fn, *args):
    with ProcessPoolExecutor(1) as pool:
        pool.submit(fn, *args).result()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mssql", required=True, help="mssql://user:password@host:port/master (a login that may "
                                                  "create databases)")
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--verify", choices=("full", "count", "tally"), default="full",
                   help="so_luigi's verification in every run (default full: counts and checksums)")
    p.add_argument("--write-only", action="store_true",
                   help="only PostgreSQL -> SQL Server (and the raw PostgreSQL pipe the ratios divide by)")
    args = p.parse_args()

    cluster = embedded.start("debian", workdir=os.path.join(ROOT, ".so_luigi", "bench-pg"))
    made = []
    try:
        source = bench.ensure_source(cluster, args.scale, args.seed)
        bench.table_sizes_cache = bench.table_sizes(source)
        rows = sum(t["rows"] for t in bench.table_sizes_cache.values())
        mb = sum(t["bytes"] for t in bench.table_sizes_cache.values()) / 1e6
        tag = uuid.uuid4().hex[:6]
        results = {}

        def pg_target(label):
            url = cluster.create_database(f"mb_{label}")
            made.append(("pg", f"mb_{label}"))
            return url

        def ms_target(label):
            name = f"so_bench_{label}_{tag}"
            made.append(("mssql", name))
            return mssql_database(args.mssql, name)

        bench.quiesce(cluster)
        results["PG -> PG raw binary pipe"] = bench.raw_pipe(cluster, source, "binary", args.workers)
        if not args.write_only:
            target = pg_target("pg")
            results["PG -> PG so_luigi"] = timed(lambda: luigi(source, target, args.workers, args.verify))
        raw = ms_target("raw")
        results["PG -> SQL Server raw bulk copy"] = timed(lambda: raw_bulk_copy(source, raw, args.workers))
        if shutil.which("freebcp"):
            with tempfile.TemporaryDirectory() as folder:
                results["PG -> SQL Server freebcp in (C)"] = freebcp_all(source, ms_target("bcp"), args.workers, folder)
        copy = ms_target("copy")
        results["PG -> SQL Server so_luigi"] = timed(lambda: luigi(source, copy, args.workers, args.verify))
        if shutil.which("freebcp"):         # the same without freebcp: pymssql's bulk copy alone
            by_pymssql = ms_target("copy_pymssql") + "?writer=pymssql"
            results["PG -> SQL Server so_luigi, pymssql"] = timed(
                lambda: luigi(source, by_pymssql, args.workers, args.verify))
        if args.write_only:
            return report(args, rows, mb, results)
        back = pg_target("back")
        driver = "pymssql" if fast.missing() else "mssql-python"
        results[f"SQL Server -> PG so_luigi, {driver}"] = timed(lambda: luigi(copy, back, args.workers, args.verify))
        if driver != "pymssql":
            again = pg_target("back_pymssql")
            slow = copy + ("&" if "?" in copy else "?") + "driver=pymssql"
            results["SQL Server -> PG so_luigi, pymssql"] = timed(lambda: luigi(slow, again, args.workers, args.verify))
        for driver in readers():
            results[f"SQL Server read: {driver}"] = timed(lambda: in_child(read_all, (copy, driver, bench.TABLES)))
    finally:
        for kind, name in made:
            try:
                if kind == "pg":
                    bench.query(cluster.url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                else:
                    mssql_admin(args.mssql, f"DROP DATABASE [{name}]")
            except Exception as exc:  # noqa: BLE001 -- a figure run leaves nothing behind if it can
                print(f"could not drop {name}: {exc}")
        cluster.stop()

    report(args, rows, mb, results)


def report(args, rows, mb, results):
    limit = results["PG -> PG raw binary pipe"]["seconds"]
    print(f"\nscale {args.scale}: {rows:,} rows, {mb:.0f} MB in PostgreSQL; {args.workers} workers; "
          f"--verify {args.verify}; "
          f"SQL Server: {parse_url(args.mssql).redacted}")
    print(f"{'method':40} {'seconds':>8} {'rows/s':>9} {'MB/s':>6} {'x PG raw':>8} {'client CPU s':>12} "
          f"{'client us/row':>13} {'other CPU s':>11}")
    for label, r in results.items():
        s = r["seconds"]
        client = r["client_cpu_seconds"]
        print(f"{label:40} {s:8.1f} {rows / s:9,.0f} {mb / s:6.1f} {s / limit:7.2f}x {client:12.1f} "
              f"{1e6 * client / rows:13.1f} {r['cpu_seconds'] - client:11.1f}")
    if not shutil.which("freebcp"):
        print("(freebcp is not installed: Debian's freetds-bin adds `freebcp in`, FreeTDS's bulk copy in C)")
    if "mssql-python-arrow" not in readers():
        print("(mssql-python and pyarrow are not installed: `pip install mssql-python pyarrow` (and Debian's "
              "libltdl7) adds their reads, the fastest client the issue measured)")
    ratio = results["PG -> SQL Server so_luigi"]["seconds"] / results["PG -> SQL Server raw bulk copy"]["seconds"]
    print(f"\nPG -> SQL Server: so_luigi (verified, keyed) takes {ratio:.2f}x the raw bulk copy of the same rows "
          "into typed columns")


if __name__ == "__main__":
    main()
