"""The Luigi tasks: thin wrappers that pass parameters to ``load`` and name their markers.

    ReplicateAll ──yields──> CompleteTable(table) ──requires──> PlanTable(table)
                                   └──yields──> LoadPartition(table, partition) ──requires──> PlanTable

Partitions are known only once a table is planned, so CompleteTable yields its LoadPartitions as
dynamic dependencies; the scheduler hands them to any free worker. Significant parameters say
which data (run_id, table, partition); how it moves (chunk_rows, buffer_mb, verify) is not
significant, so changing it never changes a task id. Connection URLs are never parameters: they
hold passwords, and parameters end up in task ids and the scheduler UI.
"""
import logging
import os
import sys

import luigi
import psycopg2

from . import bulk, load, markers, report
from .config import bulk_settings, source_endpoint, target_endpoint
from .dialects import postgres as pg
from .errors import ConfigError, SoLuigiError

log = logging.getLogger("luigi-interface.so_luigi")  # shown wherever Luigi shows its own log


def debug():
    return os.environ.get("SO_LUIGI_DEBUG", "") not in ("", "0")


class SoTask(luigi.Task):
    """Base of every so_luigi task: one-line failures for SoLuigiError, driver errors translated."""

    run_id = luigi.Parameter(default="default",
                             description="names this copy; markers and the stored plan are per run_id")

    def complete(self):
        try:
            return super().complete()
        except SoLuigiError as exc:     # e.g. the destination is unreachable: say so once, plainly
            _say(exc)
            raise

    def on_failure(self, exception):
        if isinstance(exception, SoLuigiError) and not debug():
            return f"{type(exception).__name__}: {exception}"
        return super().on_failure(exception)

    def run(self):
        try:
            result = self.work()
            if result is not None and hasattr(result, "__next__"):
                yield from result
        except psycopg2.Error as exc:
            raise pg.translate(exc) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("pymssql"):
                from .dialects import mssql
                raise mssql.translate(exc) from exc
            raise

    def work(self):
        raise NotImplementedError


def _how(task):
    return {"chunk_rows": task.chunk_rows, "buffer_mb": task.buffer_mb, "verify": task.verify,
            "mode": task.mode, "layout": task.layout}


class _HowMixin:
    mode = luigi.ChoiceParameter(choices=("streaming", "bulk"), default="streaming", significant=False,
                                 description="streaming (source cursor -> COPY FROM STDIN) or bulk (CSV files)")
    chunk_rows = luigi.IntParameter(default=500000, significant=False,
                                    description="rows per partition")
    buffer_mb = luigi.IntParameter(default=256, significant=False,
                                   description="memory cap of a loading worker's stream buffer, in MB")
    verify = luigi.ChoiceParameter(choices=("full", "count"), default="full", significant=False,
                                   description="full: row counts and content checksums; count: counts only")
    layout = luigi.ChoiceParameter(choices=("auto", "plain", "partitioned"), default="auto", significant=False,
                                   description="destination tables: plain, or range-partitioned on the key "
                                               "(COPY FREEZE per partition); auto: partitioned in bulk mode")


class PlanTable(SoTask):
    """Describe one source table, cut its partitions, create the destination table.

    One destination transaction: CREATE TABLE, the stored definition and plan, the plan marker.
    """

    table = luigi.Parameter()
    chunk_rows = luigi.IntParameter(default=500000, significant=False)
    layout = luigi.Parameter(default="plain", significant=False)
    mode = luigi.Parameter(default="streaming", significant=False)

    def output(self):
        return markers.MarkerTarget("planned", self.run_id, self.table)

    def work(self):
        load.plan_table(self.run_id, self.table, self.chunk_rows, self.layout, self.mode,
                        unlogged=bulk_settings().unlogged)


def _plan(task):
    return PlanTable(run_id=task.run_id, table=task.table, chunk_rows=task.chunk_rows, layout=task.layout,
                     mode=task.mode)


class ExtractPartition(_HowMixin, SoTask):
    """Bulk mode: write one key range of a source table as a CSV file, then its manifest.

    No database transaction: the manifest, written after the data, is the completion target.
    """

    table = luigi.Parameter()
    partition = luigi.IntParameter()

    def requires(self):
        return _plan(self)

    def output(self):
        return bulk.BulkTarget(bulk.files_for(self.run_id, self.table, self.partition).manifest)

    def work(self):
        manifest = bulk.extract_partition(self.run_id, self.table, self.partition,
                                          checksum=self.verify == "full")
        log.info("%s partition %d extracted: %d rows, %.1f MB in %.1f s", self.table, self.partition,
                 manifest["rows"], manifest["bytes"] / 1e6, manifest["seconds"])


class LoadPartition(_HowMixin, SoTask):
    """Load one key range of a table into the destination: streamed from the source, or in bulk
    mode from its extracted file.

    One destination transaction: the rows (COPY, FREEZE where the layout allows) and the
    partition's ``loaded`` marker.
    """

    table = luigi.Parameter()
    partition = luigi.IntParameter()

    def requires(self):
        if self.mode == "bulk":
            return ExtractPartition(run_id=self.run_id, table=self.table, partition=self.partition, **_how(self))
        return _plan(self)

    def output(self):
        return markers.MarkerTarget("loaded", self.run_id, self.table, self.partition)

    def work(self):
        stats = load.load_partition(self.run_id, self.table, self.partition, self.buffer_mb,
                                    checksum=self.verify == "full", mode=self.mode)
        if stats:
            rate = stats["rows"] / stats["seconds"] if stats["seconds"] else 0
            msg = (f"{self.table} partition {self.partition}: {stats['rows']} rows, "
                   f"{stats['bytes'] / 1e6:.1f} MB in {stats['seconds']:.1f} s ({rate:,.0f} rows/s)")
            log.info(msg)
            self.set_status_message(msg)
            self.set_progress_percentage(100)


class CompleteTable(_HowMixin, SoTask):
    """Load every partition of a table, verify it against the source, then finish it.

    One destination transaction after verification: primary key, indexes, identity sequences,
    ANALYZE and the complete marker.
    """

    table = luigi.Parameter()

    def requires(self):
        return _plan(self)

    def output(self):
        return markers.MarkerTarget("complete", self.run_id, self.table)

    def work(self):
        conn = pg.connect(target_endpoint())
        try:
            _, partitions = markers.planned_table(conn, self.run_id, self.table)
        finally:
            conn.close()
        yield [LoadPartition(run_id=self.run_id, table=self.table, partition=i, **_how(self))
               for i in range(partitions)]
        load.complete_table(self.run_id, self.table, self.verify)
        if self.mode == "bulk":
            bulk.remove_files(self.run_id, self.table)


class ReplicateAll(_HowMixin, SoTask):
    """Copy every table of the source schema (or ``--tables``) and print the per-table report.

    Before any data moves it checks both connections, finds the tables and maps every column
    type; then it yields one CompleteTable per table.
    """

    tables = luigi.Parameter(default="", description="comma-separated subset of source tables (default: all)")

    @property
    def wanted(self):
        return [t.strip() for t in self.tables.split(",") if t.strip()]

    def output(self):
        return markers.MarkerTarget("replicated", self.run_id, ",".join(sorted(self.wanted)) or "*")

    def complete(self):
        done = super().complete()
        if done:
            # a finished run_id pointed at another source must say so, not report "done"
            try:
                with markers.shared_connection().cursor() as cur:
                    markers.check_run(cur, self.run_id, source_endpoint(), target_endpoint())
            except SoLuigiError as exc:
                _say(exc)
                raise
        return done

    def work(self):
        if self.chunk_rows < 1 or self.buffer_mb < 1:
            raise ConfigError("--chunk-rows and --buffer-mb must be at least 1")
        source_ep, target_ep = source_endpoint(), target_endpoint()
        tables = load.discover(source_ep, self.wanted)
        conn = pg.connect(target_ep)
        try:
            markers.register_run(conn, self.run_id, source_ep, target_ep)
        finally:
            conn.close()
        names = [t.name for t in tables]
        log.info("replicating %d table(s) from %s into %s", len(names), source_ep, target_ep)
        yield [CompleteTable(run_id=self.run_id, table=n, **_how(self)) for n in names]
        conn = pg.connect(target_ep)
        try:
            text = report.render(conn, self.run_id, names, source_ep, target_ep)
            markers.mark_replicated(conn, self.run_id, ",".join(sorted(self.wanted)) or "*")
        finally:
            conn.close()
        print(text, flush=True)


# --- one clear line instead of a traceback --------------------------------------------------

class _OneLineErrors(logging.Filter):
    """Drop tracebacks of SoLuigiErrors from Luigi's log records (SO_LUIGI_DEBUG=1 keeps them)."""

    def filter(self, record):
        if debug():
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, SoLuigiError):
            record.msg = f"{record.getMessage()}: {exc}"
            record.args = ()
            record.exc_info = record.exc_text = None
        elif "so_luigi.errors." in str(record.msg) and "Traceback" in str(record.msg):
            head, _, tb = str(record.msg).partition("Traceback")
            record.msg = head.rstrip() + " " + [l for l in tb.splitlines() if l.strip()][-1]
        return True


logging.getLogger("luigi-interface").addFilter(_OneLineErrors())


_said = set()


def _say(exception):
    text = f"so_luigi: error: {exception}"
    if text not in _said:
        _said.add(text)
        print(text, file=sys.stderr, flush=True)


@SoTask.event_handler(luigi.Event.FAILURE)
def _say_failure(task, exception):
    if isinstance(exception, SoLuigiError):
        _say(exception)
