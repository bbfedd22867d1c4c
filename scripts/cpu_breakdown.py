#!/usr/bin/env python3
"""Where the CPU goes: the raw binary pipe against ReplicateAll, on the benchmark's source.

    python scripts/cpu_breakdown.py --scale 0.5 [--verify count] [--mode streaming] [--tables Posts]

Runs each method as scripts/benchmark.py does (same cluster, source and table parallelism)
under `perf record -a` (Debian's linux-perf), with the server logging every statement and its
process id. Each sampled process is then put in one category by what it did: a backend by its
longest statement (a parallel worker with its leader), a client by its program. Prints CPU
seconds per category and method: the gap to the raw pipe, item by item.
"""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark as bench  # noqa: E402

from so_luigi.testing import embedded  # noqa: E402

HZ = 499
KEY_RANGE = ", of which by key range"
LOG_SETTINGS = ["log_min_duration_statement=0", "log_line_prefix='%m [%p] '"]
ENTRY = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] (\w+):  (.*)", re.S)
CLIENT = "client: psql, or so_luigi's processes"
CLIENTS = ("psql", "perl", "python", "pg_dump", "sh")      # psql is a perl wrapper on Debian


def statement_kind(sql):
    """The category of one statement, from its text."""
    s = " ".join(sql.split()).upper()
    if s.startswith("COPY (") or (s.startswith("COPY") and re.search(r"\) TO |\bTO (STDOUT|')", s)):
        return "source: COPY TO (read)" + (KEY_RANGE if " WHERE " in s else "")
    if s.startswith("COPY"):
        return "destination: COPY FROM (load)"      # FROM STDIN, or a bulk file the server reads
    if "PRIMARY KEY" in s or "CREATE UNIQUE INDEX" in s or "CREATE INDEX" in s or s.startswith("ANALYZE") \
            or "\nANALYZE" in sql.upper():
        return "destination: keys, indexes, ANALYZE"
    if re.search(r"COUNT\(\*\),", s):
        return "verification: counts and checksums"
    if "WITH RECURSIVE" in s or re.match(r"SELECT COUNT\(\*\) FROM", s) or re.search(r" OFFSET \S+ LIMIT 1$", s):
        return "planning: count and key walk"          # postgres.offset_boundaries steps with OFFSET
    if re.match(r"(DROP|CREATE) DATABASE", s):
        return "benchmark: CREATE and DROP DATABASE"
    return "connections and small statements"


def backends(log_text):
    """{pid: [(ms, statement)]} from the server log (multi-line statements joined)."""
    found = collections.defaultdict(list)
    entries = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log_text)
    for entry in entries:
        m = ENTRY.match(entry)
        if not m or m.group(2) != "LOG":
            continue
        d = re.match(r"duration: ([\d.]+) ms  statement: (.*)", m.group(3), re.S)
        if d:
            found[m.group(1)].append((float(d.group(1)), d.group(2)))
    return found


def kind_of(pid, statements, titles):
    if pid in statements:
        # the statement that took longest says what the session was for; keys and ANALYZE
        # win over their psql session's SETs
        kinds = [(ms, statement_kind(sql)) for ms, sql in statements[pid]]
        return max(kinds)[1]
    title = titles.get(pid, "")
    leader = re.search(r"parallel worker for PID (\d+)", title)
    if leader:
        return kind_of(leader.group(1), statements, {}) if leader.group(1) in statements else \
            "postgres: parallel worker (leader unknown)"
    if title.startswith("postgres: "):
        return "server background: " + " ".join(title.split()[1:3])
    return "postgres: unidentified (short-lived)"


def watch_titles(titles, stop):
    """Process titles of new postgres processes (a parallel worker names its leader's pid)."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if pid.isdigit() and pid not in titles:
                try:
                    with open(f"/proc/{pid}/cmdline") as fh:
                        title = fh.read().replace("\0", " ").strip()
                except OSError:
                    continue
                titles[pid] = title
        time.sleep(0.05)


def attribute(perf_data, statements, titles):
    out = subprocess.run(["perf", "report", "-i", perf_data, "--sort", "pid", "--stdio", "-q", "-n"],
                         capture_output=True, text=True, check=True).stdout
    seconds = collections.Counter()
    me = str(os.getpid())
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3 or ":" not in parts[2]:
            continue
        pid, comm = parts[2].split(":", 1)
        if pid in ("0", me) or comm == "perf":
            continue                                    # idle, this script's own watcher, perf
        if comm == "postgres":
            kind = kind_of(pid, statements, titles)
        elif comm in CLIENTS:
            kind = CLIENT
        else:
            kind = "kernel and other processes"
        seconds[kind] += int(parts[1]) / HZ
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--verify", choices=("count", "tally", "full"), default="count")
    p.add_argument("--mode", choices=("streaming", "bulk"), default="streaming")
    p.add_argument("--tables", default="", help="comma-separated subset to copy, as in benchmark.py")
    args = p.parse_args()
    if not shutil.which("perf"):
        raise SystemExit("cpu_breakdown.py needs perf: apt-get install linux-perf")
    workdir = os.path.join(bench.ROOT, ".so_luigi", "bench-pg")
    cluster = embedded.start("debian", settings=LOG_SETTINGS, workdir=workdir)
    log_path = os.path.join(workdir, "log")
    results, walls = {}, {}
    scratch = tempfile.mkdtemp(prefix="so_luigi_perf_")
    try:
        source = bench.ensure_source(cluster, args.scale, args.seed)
        bench.table_sizes_cache = bench.table_sizes(source)
        bench.select_tables(args.tables)
        for label in ("raw binary pipe", f"so_luigi {args.mode}, {args.verify}"):
            bench.quiesce(cluster)
            offset = os.path.getsize(log_path)
            titles, stop = {}, threading.Event()
            watcher = threading.Thread(target=watch_titles, args=(titles, stop), daemon=True)
            watcher.start()
            data = os.path.join(scratch, "perf.data")
            perf = subprocess.Popen(["perf", "record", "-a", "-F", str(HZ), "-o", data, "-q"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            if label.startswith("raw"):
                r = bench.raw_pipe(cluster, source, "binary", args.workers)
            else:
                extra = ["--verify", args.verify, "--mode", args.mode]
                r = bench.replicate(cluster, source, "cpu_breakdown", args.workers, extra)
            perf.send_signal(2)
            perf.wait()
            stop.set()
            watcher.join()
            with open(log_path, errors="replace") as fh:
                fh.seek(offset)
                statements = backends(fh.read())
            results[label], walls[label] = attribute(data, statements, titles), r["seconds"]
            print(f"{label}: {r['seconds']:.1f} s", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    labels = list(results)
    for r in results.values():      # reads by key range are shown as part of all reads, then apart
        r["source: COPY TO (read)"] += r.get("source: COPY TO (read)" + KEY_RANGE, 0.0)
    kinds = sorted({k for r in results.values() for k in r},
                   key=lambda k: (-max(r.get(k.replace(KEY_RANGE, ""), 0) for r in results.values()),
                                  k.endswith(KEY_RANGE)))
    print(f"\nCPU seconds by what the process did (perf samples at {HZ} Hz, all CPUs)")
    print(f"{'':<48}" + "".join(f"{lbl:>24}" for lbl in labels) + f"{'difference':>12}")
    for k in kinds:
        vals = [results[lbl].get(k, 0.0) for lbl in labels]
        name = "  of which by key range" if k.endswith(KEY_RANGE) else k
        print(f"{name:<48}" + "".join(f"{v:>24.2f}" for v in vals) + f"{vals[-1] - vals[0]:>+12.2f}")
    totals = [sum(v for k, v in results[lbl].items() if not k.endswith(KEY_RANGE)) for lbl in labels]
    print(f"{'total busy CPU':<48}" + "".join(f"{v:>24.2f}" for v in totals) + f"{totals[-1] - totals[0]:>+12.2f}")
    print(f"{'wall seconds':<48}" + "".join(f"{walls[lbl]:>24.1f}" for lbl in labels))


if __name__ == "__main__":
    main()
