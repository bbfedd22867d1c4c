#!/usr/bin/env python3
"""SQL Server -> PostgreSQL: so_luigi's client CPU per row against the fastest reader's, in
interleaved rounds (issue 33, item 2).

    python scripts/mssql_read_rounds.py --mssql mssql://user:pw@127.0.0.1:1433/master --scale 0.05 \\
        [--rounds 3] [--other /path/to/another/checkout]

This machine's speed drifts by 20% or more between minutes (docs/performance.md), more than the
change one session makes; one run of each, minutes apart (scripts/mssql_benchmark.py), cannot
tell them apart. Here every round reads the same rows once through the bare reader
(mssql-python's Arrow batches, one connection, rows dropped) and copies them with
``ReplicateAll --verify count`` and ``--verify full`` (with ``--other``, that checkout's code
too, run from its directory), and each copy's client CPU is divided by the same round's bare
read. Prints the median of those ratios, and client us/row; and the same ratios over the bare
read run as a program of its own (``python -c``: start-up and imports included, as the issue
measured the fastest client).

The SQL Server source is the StackOverflow-shaped sample, copied there once by so_luigi from
the PostgreSQL cluster scripts/benchmark.py keeps (database so_read_rounds_<scale>, kept for the
next run: drop it by hand). Figures only: nothing here is a test.
"""
import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import benchmark as bench  # noqa: E402
import mssql_benchmark as mb  # noqa: E402

from so_luigi.testing import embedded  # noqa: E402


def exists(url, name):
    """Whether the server at ``url`` has database ``name``."""
    conn = mb.ms_connection.connect(mb.Endpoint(mb.parse_url(url), "dbo", "source"))
    try:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM sys.databases WHERE name = %s", (name,))
        return cur.fetchone()[0] > 0
    finally:
        conn.close()


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(fn):
    cpu, started = children_cpu(), time.monotonic()
    fn()
    return children_cpu() - cpu, time.monotonic() - started


# the fastest client as a program of its own: Python's start, mssql-python's and pyarrow's
# imports and the read (the measure: the process tree's CPU)
BARE_PROGRAM = """
import os, mssql_python
conn = mssql_python.connect(os.environ["BARE_CONNECTION"])
cur = conn.cursor()
for name in os.environ["BARE_TABLES"].split(","):
    cur.execute(f"SELECT * FROM [dbo].[{name}]")
    for _ in cur.arrow_reader(batch_size=5000):
        pass
conn.close()
"""


def bare_program(source):
    """The bare read run as ``python -c``: what a user's own reader costs, start-up included.
    OpenBLAS's thread pool is left unstarted, as so_luigi leaves it."""
    env = dict(os.environ, BARE_CONNECTION=mb.fast.connection_string(mb.parse_url(source), "no"),
               BARE_TABLES=",".join(bench.TABLES), OPENBLAS_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", BARE_PROGRAM], env=env, check=True)


def copy(root, source, target, verify):
    env = dict(os.environ, SO_SOURCE_URL=source, SO_TARGET_URL=target)
    out = subprocess.run([sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
                          "--workers", "2", "--verify", verify], cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"ReplicateAll from {root} failed:\n{out.stderr[-3000:]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mssql", required=True, help="mssql://user:password@host:port/master (may create a database)")
    p.add_argument("--scale", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--other", help="another checkout of so_luigi to run beside this one")
    args = p.parse_args()
    if mb.fast.missing():
        raise SystemExit(f"the bare reader needs mssql-python's Arrow batches: {mb.fast.missing()}")
    checkouts = [("this", ROOT)] + ([("other", os.path.abspath(args.other))] if args.other else [])

    cluster = embedded.start("debian", workdir=os.path.join(ROOT, ".so_luigi", "bench-pg"))
    try:
        sample = bench.ensure_source(cluster, args.scale, args.seed)
        rows = sum(t["rows"] for t in bench.table_sizes(sample).values())
        name = f"so_read_rounds_{str(args.scale).replace('.', '_')}"
        if exists(args.mssql, name):
            source = urlunsplit(urlsplit(args.mssql)._replace(path="/" + name))
        else:
            print(f"copying the sample into SQL Server database {name} (once)", flush=True)
            source = mb.mssql_database(args.mssql, name)
            copy(ROOT, sample, source, "count")
        for _, root in checkouts:
            # the bytecode a user's install has (pip writes it; PYTHONDONTWRITEBYTECODE, set on
            # some machines, would make each run compile so_luigi again)
            compileall.compile_dir(os.path.join(root, "so_luigi"), quiet=1)
        figures = {}
        for n in range(args.rounds):
            figures.setdefault("bare Arrow read", []).append(
                timed(lambda: mb.in_child(mb.read_all, (source, "mssql-python-arrow", bench.TABLES))))
            figures.setdefault("bare read, own process", []).append(timed(lambda: bare_program(source)))
            for verify in ("count", "full"):
                for label, root in checkouts:
                    bench.query(cluster.url(), 'DROP DATABASE IF EXISTS "read_rounds" WITH (FORCE)')
                    target = cluster.create_database("read_rounds")
                    figures.setdefault(f"{label}, --verify {verify}", []).append(
                        timed(lambda: copy(root, source, target, verify)))
            print(f"round {n + 1} of {args.rounds}: " + ", ".join(
                f"{k} {v[-1][0] / rows * 1e6:.2f}" for k, v in figures.items()) + " us/row", flush=True)
        bench.query(cluster.url(), 'DROP DATABASE IF EXISTS "read_rounds" WITH (FORCE)')
    finally:
        cluster.stop()

    bare, own = figures["bare Arrow read"], figures["bare read, own process"]
    print(f"\n{rows:,} rows; {args.rounds} rounds; ratios are the median of each round's client CPU over that "
          "round's bare Arrow read (forked after the imports: the read alone) and over the same read run as "
          "a program of its own (start-up and imports included)" + (f"; other = {args.other}" if args.other else ""))
    print(f"{'method':26} {'client us/row':>13} {'wall s':>7} {'x bare read':>11} {'x own process':>13}  per round")
    for label, runs in figures.items():
        ratios = [cpu / base for (cpu, _), (base, _) in zip(runs, bare)]
        whole = [cpu / base for (cpu, _), (base, _) in zip(runs, own)]
        print(f"{label:26} {statistics.median(c for c, _ in runs) / rows * 1e6:13.2f} "
              f"{statistics.median(w for _, w in runs):7.1f} {statistics.median(ratios):10.2f}x "
              f"{statistics.median(whole):12.2f}x  " + " ".join(f"{r:.2f}" for r in ratios)
              + "  |  " + " ".join(f"{r:.2f}" for r in whole))


if __name__ == "__main__":
    main()
