#!/usr/bin/env python3
"""What a database of many small tables costs: so_luigi against pg_dump | psql on the same data.

    python scripts/many_tables_benchmark.py --tables 500 --rows 20 [--workers 2] [--repeat 1]

Uses scripts/benchmark.py's PostgreSQL cluster (.so_luigi/bench-pg), makes a source database of
``--tables`` tables of ``--rows`` rows each (an integer key, a text, a timestamp and a numeric
column: the shape of a small lookup or settings table), then times, each into a fresh database:

1. ``pg_dump -Fc | pg_restore`` of the whole source (schema, rows, keys), one process;
2. ``pg_dump | psql`` (plain SQL), one process, the issue's reference;
3. ``luigi --module so_luigi ReplicateAll --local-scheduler --workers N`` with full verification.

Prints seconds, ratio to ``pg_dump | psql``, CPU seconds of the client processes and the peak RSS
of the largest one, and checks the copy (count and checksum of every table) outside so_luigi.
"""
import argparse
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchmark as b  # noqa: E402
from so_luigi.testing import embedded  # noqa: E402


def make_source(cluster, tables, rows):
    name = f"many_{tables}x{rows}"
    url = cluster.url(name)
    if b.query(cluster.url(), "SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
        return url
    cluster.create_database(name)
    statements = []
    for i in range(tables):
        statements.append(f'CREATE TABLE "T{i:05d}" (id int PRIMARY KEY, label text NOT NULL, '
                          f"changed timestamp, amount numeric(12,2)); "
                          f'INSERT INTO "T{i:05d}" SELECT g, md5(g::text || {i}), '
                          "timestamp '2020-01-01' + g * interval '1 hour', g * 1.25 "
                          f"FROM generate_series(1, {rows}) g;")
    for start in range(0, len(statements), 200):
        b.query(url, "".join(statements[start:start + 200]))
    b.query(url, "VACUUM ANALYZE")
    return url


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(fn):
    started, cpu = time.monotonic(), children_cpu()
    fn()
    return time.monotonic() - started, children_cpu() - cpu


def fingerprint(url, tables):
    sums = b.query(url, " UNION ALL ".join(
        f"SELECT '{t}', count(*), coalesce(sum(hashtextextended(r::text, 0)), 0) FROM \"{t}\" r" for t in tables))
    return sorted(sums)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", type=int, default=500)
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--only", choices=("all", "so_luigi"), default="all")
    args = p.parse_args()
    cluster = embedded.start("debian", workdir=os.path.join(b.ROOT, ".so_luigi", "bench-pg"))
    try:
        measure(args, cluster)
    finally:
        cluster.stop()


def measure(args, cluster):
    source = make_source(cluster, args.tables, args.rows)
    names = [f"T{i:05d}" for i in range(args.tables)]
    expected = fingerprint(source, names)
    results = {}

    def into(label, run):
        b.drop_db(cluster, label)
        target = cluster.create_database(label)
        seconds, cpu = timed(lambda: run(target))
        assert fingerprint(target, names) == expected, f"{label}: the copy differs from the source"
        results.setdefault(label, []).append((seconds, cpu))
        b.drop_db(cluster, label)

    def dump_restore(target):
        dump = subprocess.run(["pg_dump", "-Fc", source], capture_output=True, check=True).stdout
        subprocess.run(["pg_restore", "-d", target], input=dump, capture_output=True, check=True)

    def dump_psql(target):
        subprocess.run(f"pg_dump '{source}' | psql -q -o /dev/null '{target}'", shell=True, check=True,
                       capture_output=True)

    def so_luigi(target):
        env = dict(os.environ, SO_SOURCE_URL=source, SO_TARGET_URL=target)
        out = subprocess.run([sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll",
                              "--local-scheduler", "--workers", str(args.workers)], cwd=b.ROOT, env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"ReplicateAll failed:\n{out.stderr[-3000:]}")

    for _ in range(args.repeat):
        if args.only == "all":
            into("many_dump_restore", dump_restore)
            into("many_dump_psql", dump_psql)
        into("many_so_luigi", so_luigi)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    reference = min(s for s, _ in results.get("many_dump_psql", [(None, None)])) \
        if "many_dump_psql" in results else None
    print(f"\n{args.tables} tables of {args.rows} rows, {args.workers} workers")
    print(f"{'method':<22} {'seconds':>8} {'x pg_dump|psql':>15} {'client CPU s':>13} {'per table ms':>13}")
    for label, runs in results.items():
        seconds, cpu = min(runs)
        ratio = f"{seconds / reference:.2f}x" if reference else "-"
        print(f"{label:<22} {seconds:>8.1f} {ratio:>15} {cpu:>13.1f} {1000 * seconds / args.tables:>13.1f}")
    print(f"peak RSS of the largest client process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
