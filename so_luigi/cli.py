"""`so-luigi` (= `python -m so_luigi`): everything that is not a Luigi run.

    so-luigi demo                 embedded PostgreSQL + generated sample + ReplicateAll + report
    so-luigi generate --to URL    fill a source database with the StackOverflow-shaped sample
    so-luigi load-dump DUMP --to URL   build a source database from a Stack Exchange dump
    so-luigi report               per-table summary of a run, from the marker tables
    so-luigi status               progress of a run while it runs: partitions, rows, rate, ETA
    so-luigi reset                forget a run's markers so the next run copies afresh
    so-luigi types                the SQL Server -> PostgreSQL type table (Markdown)
    so-luigi luigid [ARGS]        Luigi's central scheduler with so_luigi's [resources] defaults
"""
import argparse
import os
import sys
import time

from .errors import SoLuigiError


def _endpoint(url, schema, role):
    from .config import DEFAULT_SCHEMA, Endpoint, parse_url
    parsed = parse_url(url, role)
    return Endpoint(parsed, schema or DEFAULT_SCHEMA[parsed.dialect], role)


def cmd_demo(args):
    import luigi

    from .testing import embedded, sample
    from .tasks import ReplicateAll
    print(f"so_luigi demo: starting an embedded PostgreSQL ({args.server})", flush=True)
    cluster = embedded.start(args.server)
    try:
        source_url = cluster.create_database("so_source")
        target_url = cluster.create_database("so_target")
        os.environ["SO_SOURCE_URL"], os.environ["SO_TARGET_URL"] = source_url, target_url
        os.environ.pop("SO_SOURCE_SCHEMA", None)
        os.environ.pop("SO_TARGET_SCHEMA", None)
        print(f"generating the StackOverflow-shaped sample at scale {args.scale} into {source_url}")
        started = time.monotonic()
        sample.fill(_endpoint(source_url, "public", "source"), scale=args.scale, seed=args.seed)
        print(f"sample ready in {time.monotonic() - started:.1f} s; replicating with Luigi "
              f"({args.workers} workers)", flush=True)
        ok = luigi.build([ReplicateAll(chunk_rows=args.chunk_rows)], local_scheduler=True,
                         workers=args.workers, log_level="WARNING")
        print("demo " + ("succeeded: every table verified" if ok else "FAILED"), flush=True)
        return 0 if ok else 1
    finally:
        cluster.stop()


def cmd_generate(args):
    from .testing import sample
    ep = _endpoint(args.to, args.schema, "source")
    print(f"generating sample scale {args.scale} seed {args.seed} into {ep}")
    total = sample.fill(ep, scale=args.scale, seed=args.seed, post_history=args.post_history)
    print(f"{total:,} rows")
    return 0


def cmd_load_dump(args):
    from . import dump
    ep = _endpoint(args.to, args.schema, "source")
    print(f"loading dump {args.dump} into {ep}")
    started = time.monotonic()
    counts, _ = dump.load_dump(args.dump, ep, post_history=not args.no_post_history, tags=not args.no_tags,
                               zero_fill=args.zero_fill)
    dump.mark_loaded(ep, dump.fingerprint(args.dump, not args.no_post_history, not args.no_tags, args.zero_fill),
                     sum(counts.values()))
    print(f"{sum(counts.values()):,} rows in {len(counts)} tables in {time.monotonic() - started:.1f} s")
    return 0


def _target_conn(autocommit=False):
    from .config import target_endpoint
    from .dialects import destination
    return destination(target_endpoint()).connect(autocommit)


def cmd_report(args):
    from . import report
    conn = _target_conn()
    try:
        print(report.render(conn, args.run_id))
    finally:
        conn.close()
    return 0


def cmd_status(args):
    from . import report
    conn = _target_conn(autocommit=True)
    try:
        while True:
            print(report.status(conn, args.run_id, every=args.all), flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)
            print()
    finally:
        conn.close()


def cmd_reset(args):
    from . import bulk
    from .config import target_endpoint
    from .dialects import destination
    from .state import markers
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] or None
    conn = _target_conn()
    try:
        markers.ensure_schema(conn)
        if args.drop_tables:
            with conn.cursor() as cur:
                planned = markers.planned_names(cur, args.run_id)
                dst = destination(target_endpoint())
                dst.owned = markers.owns
                dropping = [markers.planned_table(conn, args.run_id, n)[0] for n in planned
                            if tables is None or n in tables]
                places = [(dst.schema_of(t), t.name) for t in dropping]
                dst.drop_tables(cur, places)
                markers.disown(cur, places)
        markers.reset(conn, args.run_id, tables)
    finally:
        conn.close()
    for table in tables or [None]:          # bulk files of the forgotten plans, wherever they are
        bulk.remove_files(args.run_id, table, keep=False)
    what = ", ".join(tables) if tables else "all tables"
    print(f"run {args.run_id!r}: markers and bulk files of {what} removed; the next run copies them afresh")
    return 0


def cmd_types(args):
    from .dialects.postgres.types import markdown_table
    print(markdown_table())
    return 0


def cmd_luigid(args):
    """luigid, from any directory, with so_luigi's connection caps unless a luigi.cfg sets them."""
    from luigi.cmdline import luigid
    luigid(args.luigid_args)
    return 0


def parser():
    p = argparse.ArgumentParser(prog="so-luigi", description=__doc__.split("\n\n")[0].strip())
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the whole pipeline on an embedded PostgreSQL and a generated sample")
    d.add_argument("--scale", type=float, default=0.005, help="sample size, 1.0 = StackOverflow2010 row counts")
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--workers", type=int, default=2)
    d.add_argument("--chunk-rows", type=int, default=20000)
    d.add_argument("--server", choices=("pgserver", "debian"), default="pgserver",
                   help="pgserver (pip, the default) or the machine's own PostgreSQL binaries")
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("generate", help="fill a source database with the StackOverflow-shaped sample")
    g.add_argument("--to", required=True, help="postgresql:// or mssql:// URL")
    g.add_argument("--schema", default="")
    g.add_argument("--scale", type=float, default=0.01)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--post-history", action="store_true", help="also PostHistory")
    g.set_defaults(func=cmd_generate)

    ld = sub.add_parser("load-dump", help="build a source database from a Stack Exchange dump (folder or .7z)")
    ld.add_argument("dump", help="the site's folder of XML files, or its .7z archive")
    ld.add_argument("--to", required=True, help="postgresql:// or mssql:// URL of the database to fill")
    ld.add_argument("--schema", default="", help="default public / dbo")
    ld.add_argument("--no-post-history", action="store_true", help="leave PostHistory out")
    ld.add_argument("--no-tags", action="store_true", help="leave Tags out")
    ld.add_argument("--zero-fill", action="store_true", help="0 for missing integers, as SODDI does")
    ld.set_defaults(func=cmd_load_dump)

    r = sub.add_parser("report", help="per-table summary of a run (reads [target] / SO_TARGET_URL)")
    r.add_argument("--run-id", default="default")
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("status", help="per-table progress of a run, also while it runs, from any machine "
                                      "that reaches the destination")
    s.add_argument("--run-id", default="default")
    s.add_argument("--watch", type=float, default=0, metavar="SECONDS", help="repeat every SECONDS")
    s.add_argument("--all", action="store_true",
                   help="list every table (of a run of more than 40 tables, the complete ones are counted)")
    s.set_defaults(func=cmd_status)

    z = sub.add_parser("reset", help="forget a run's markers: the next run copies afresh")
    z.add_argument("--run-id", default="default")
    z.add_argument("--tables", default="", help="comma-separated subset (default: the whole run)")
    z.add_argument("--drop-tables", action="store_true", help="also drop the destination tables")
    z.set_defaults(func=cmd_reset)

    t = sub.add_parser("types", help="print the SQL Server -> PostgreSQL type table")
    t.set_defaults(func=cmd_types)

    lg = sub.add_parser("luigid", help="Luigi's central scheduler with so_luigi's [resources] defaults "
                                       "(arguments go to luigid)")
    lg.add_argument("luigid_args", nargs="*", help="e.g. --background --port 8082")
    lg.set_defaults(func=cmd_luigid)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["luigid"]:          # every argument is luigid's, --help included
        argv = ["luigid", "--", *argv[1:]]
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SoLuigiError as exc:
        if os.environ.get("SO_LUIGI_DEBUG", "") not in ("", "0"):     # as tasks.debug() reads it
            raise
        print(f"so-luigi: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
