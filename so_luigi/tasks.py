"""The Luigi tasks: thin wrappers that pass parameters to ``load`` and name their markers.

    ReplicateAll ──requires──> CompleteTable(table) ──requires──> LoadPartition(table, partition)
          │                                                      └─(bulk)─requires──> ExtractPartition
          └──requires──> ForeignKey(table, key) ──requires──> CompleteTable(both tables)

The graph is static: ReplicateAll finds the tables and CompleteTable plans its table when Luigi
schedules them, so every process that schedules ReplicateAll against one luigid sees the same
partitions and the scheduler hands each to one free worker, on any host. Significant parameters say
which data (run_id, table, partition); how it moves (chunk_rows, chunk_mb, buffer_mb, verify) is not
significant, so changing it never changes a task id. Connection URLs are never parameters: they
hold passwords, and parameters end up in task ids and the scheduler UI.
"""
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import luigi
import tenacity

from . import bulk, load, recover, report, snapshot, sync, targets
from .config import bulk_settings, section, source_endpoint, target_endpoint
from .dialects import reusing_sessions, translate
from .errors import ConfigError, IncompleteCopy, SchemaError, SnapshotGone, SoLuigiError, TransientError, one_line
from .planning import rows_per_partition, surely_one
from .progress import Progress
from .luigi_config import share_caps
from .luigi_internals import a_worker_is_scheduling, count_work_done_elsewhere, scheduling_worker_scheduler
from .state import markers

log = logging.getLogger("luigi-interface.so_luigi")  # shown wherever Luigi shows its own log


def debug():
    return os.environ.get("SO_LUIGI_DEBUG", "") not in ("", "0")


class SoTask(luigi.Task):
    """Base of every so_luigi task: one-line failures for SoLuigiError, driver errors translated."""

    run_id = luigi.Parameter(default="default",
                             description="names this copy; markers and the stored plan are per run_id")

    def complete(self):
        with plainly():                 # e.g. the destination is unreachable: say so once, plainly
            return super().complete()

    def on_failure(self, exception):
        if isinstance(exception, SoLuigiError) and not debug():
            return f"{type(exception).__name__}: {exception}"
        return super().on_failure(exception)

    def run(self):
        """work(), with driver errors translated and transient ones retried ([retries] in luigi.cfg,
        through tenacity, which Luigi itself depends on).

        Terminal errors (bad type, missing table, verification) fail at once. Every step is one
        transaction, so a retry starts from a clean state.
        """
        return self.retried(self.do)

    def retried(self, step):
        """``step()`` as run() runs do(): translated, retried, going on at a new snapshot."""
        settings = section("retries")

        def say(state):
            log.warning("%s: %s; retry %d of %d in %.0f s", self, state.outcome.exception(), state.attempt_number,
                        settings.transient, settings.delay_seconds)
        retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(TransientError),
                                     stop=tenacity.stop_after_attempt(settings.transient + 1),
                                     wait=tenacity.wait_fixed(settings.delay_seconds),
                                     before_sleep=say, reraise=True)
        return retrying(self.work, step)

    def work(self, step=None):
        """The task's body (or ``step``), with driver errors as SoLuigiErrors. A task meeting the
        loss of the run's source snapshot goes on at a new one (once: recover.renew)."""
        step = step or self.do
        try:
            return step()
        except SnapshotGone as exc:
            if exc.snapshot is None or getattr(self, "_renewed", False):
                raise
            self._renewed = True
            log.warning("%s: source snapshot %s is gone; the run reads at %s from now on", self, exc.snapshot,
                        recover.renew(self.run_id, exc.snapshot))
            return self.work(step)
        except Exception as exc:
            err = _translated(exc)
            if err is None:
                raise
            raise err from exc

    # connections a task holds while it runs, capped by [resources] of the scheduler's luigi.cfg
    # across all workers sharing it. One unit each, never more: a scheduler without [resources]
    # grants 1 of an unknown resource, and a task asking 2 would never run. (A bulk load's
    # progress watcher and a verification's second session ride on that unit, and each worker
    # process keeps one marker-check connection besides.)
    uses = {"source_connections": 1, "target_connections": 1}

    @property
    def resources(self):
        return dict(self.uses)

    def do(self):
        raise NotImplementedError


_planned = {}   # (run_id, table) -> partition weights, planned in this process while scheduling
_previewed = {}  # the same, seen by a dry pass: nothing was planned


def plan_weights(task, table=None, for_a_run=None):
    """Expected MB of each partition of ``task``'s table, planning it first if no process has
    (``table``: its source definition, when just discovered). In a dry pass (``for_a_run``
    False; by default, unless a_worker_is_scheduling), the stored plan's, else the plan's the
    source gives now, with nothing written anywhere."""
    if not (a_worker_is_scheduling() if for_a_run is None else for_a_run):
        return planned_weights(task.run_id, task.table) or load.preview_weights(
            task.run_id, task.table, task.chunk_rows, task.chunk_mb, table)
    return load.ensure_planned(task.run_id, task.table, task.chunk_rows, task.layout, task.mode,
                               bulk_settings().unlogged, task.chunk_mb, table)


def planned_weights(run_id, table):
    """The stored plan's partition weights, or None when the table is not planned (or no run
    ever made the marker tables): read only."""
    conn = markers.shared_connection()
    with conn.cursor() as cur:
        if not markers.marker_table_exists(cur, "partitions"):
            return None
    return markers.partition_weights(conn, run_id, table) or None


def _translated(exc):
    """A driver error (psycopg2 or pymssql) as a one-line SoLuigiError, else None."""
    return translate(exc, *load.endpoints())


def _how(task):
    return {"chunk_rows": task.chunk_rows, "chunk_mb": task.chunk_mb, "buffer_mb": task.buffer_mb,
            "verify": task.verify, "mode": task.mode, "layout": task.layout}


class _HowMixin:
    mode = luigi.ChoiceParameter(choices=("streaming", "bulk"), default="streaming", significant=False,
                                 description="streaming (source cursor -> COPY FROM STDIN) or bulk "
                                             "(CSV or binary COPY files)")
    chunk_rows = luigi.IntParameter(default=10000000, significant=False,
                                    description="rows per partition, at most")
    chunk_mb = luigi.IntParameter(default=512, significant=False,
                                  description="MB of the source table on disk per partition, about "
                                              "(wide tables are cut by size, narrow ones by --chunk-rows)")
    buffer_mb = luigi.IntParameter(default=256, significant=False,
                                   description="memory cap of a loading worker's stream buffer, in MB")
    verify = luigi.ChoiceParameter(choices=("full", "count", "tally"), default="full", significant=False,
                                   description="full: row counts and content checksums; count: counts only; "
                                               "tally: the source's count against the rows each partition's "
                                               "COPY stored (no scan of the destination)")
    layout = luigi.ChoiceParameter(choices=("auto", "plain", "partitioned"), default="auto", significant=False,
                                   description="destination tables: plain (the source's shape; auto), or "
                                               "range-partitioned on the key (a child table per partition)")


class _Weighted:
    """A unit of work scheduled by its size: the biggest first, small ones filling in around them."""
    weight = luigi.IntParameter(default=0, significant=False,
                                description="expected MB: the biggest work is scheduled first")

    @property
    def priority(self):
        return self.weight


class ExtractPartition(_Weighted, _HowMixin, SoTask):
    """Bulk mode: write one key range of a source table as a file (CSV or binary COPY), then its
    manifest.

    No database transaction: the manifest, written after the data, is the completion target.
    """

    table = luigi.Parameter()
    partition = luigi.IntParameter()
    uses = {"source_connections": 1}

    def output(self):
        return targets.BulkTarget(bulk.files_for(self.run_id, self.table, self.partition).manifest,
                               lambda: markers.partition_plan(markers.shared_connection(), self.run_id, self.table,
                                                              self.partition))

    def do(self):
        manifest = load.extract_partition(self.run_id, self.table, self.partition,
                                          checksum=self.verify == "full")
        log.info("%s partition %d extracted: %d rows, %.1f MB in %.1f s", self.table, self.partition,
                 manifest["rows"], manifest["bytes"] / 1e6, manifest["seconds"])


class LoadPartition(_Weighted, _HowMixin, SoTask):
    """Load one key range of a table into the destination: streamed from the source, or in bulk
    mode from its extracted file.

    One destination transaction: the rows (COPY, FREEZE where the layout allows) and the
    partition's ``loaded`` marker.
    """

    table = luigi.Parameter()
    partition = luigi.IntParameter()
    partitions = luigi.IntParameter(default=0, significant=False,
                                    description="the table's partition count (bulk mode: partition 0 loads "
                                                "every file of a plain table, in one transaction)")

    @property
    def resources(self):
        # bulk: no source session; streaming: one source and one destination session
        return {"target_connections": 1} if self.mode == "bulk" else dict(self.uses)

    @property
    def whole(self):
        """Bulk mode, a plain table of several partitions: its files load in one transaction."""
        return self.mode == "bulk" and self.layout != "partitioned" and self.partitions > 1

    def requires(self):
        """Bulk mode: the partition's file (every file, for partition 0 of a whole table), unless
        it was loaded at a source snapshot since lost: that one is proven against the source."""
        if self.mode != "bulk":
            return []
        if not self.whole:
            if markers.marker_exists("loaded at any snapshot", self.run_id, self.table, self.partition):
                return []
            return ExtractPartition(run_id=self.run_id, table=self.table, partition=self.partition,
                                    weight=self.weight, **_how(self))
        if self.partition == 0:         # every file extracted, in parallel, then loaded at once
            return [ExtractPartition(run_id=self.run_id, table=self.table, partition=i, weight=self.weight,
                                     **_how(self)) for i in range(self.partitions)
                    if not markers.marker_exists("loaded at any snapshot", self.run_id, self.table, i)]
        return LoadPartition(run_id=self.run_id, table=self.table, partition=0, partitions=self.partitions,
                             weight=self.weight, **_how(self))

    def output(self):
        return targets.MarkerTarget("loaded", self.run_id, self.table, self.partition)

    def do(self):
        progress = Progress(self, f"{self.table} partition {self.partition}")
        if self.whole and self.partition == 0:
            stats = load.load_table_files(self.run_id, self.table, self.buffer_mb, checksum=self.verify == "full",
                                          progress=progress)
        else:
            stats = load_one(self, self.table, self.partition, progress)
        if stats:
            rate = stats["rows"] / stats["seconds"] if stats["seconds"] else 0
            msg = (f"{self.table} partition {self.partition}: {stats['rows']:,} rows, "
                   f"{stats['bytes'] / 1e6:.1f} MB in {stats['seconds']:.1f} s ({rate:,.0f} rows/s)")
            log.info(msg)
            progress.finish(msg)


def load_one(task, table, partition, progress):
    """One partition of ``table`` loaded as ``task`` says (load.load_partition); one loaded at a
    source snapshot since lost is proven at the run's instead. Returns its stats, or None."""
    stats = load.load_partition(task.run_id, table, partition, task.buffer_mb, checksum=task.verify == "full",
                                mode=task.mode, progress=progress)
    if stats == load.STALE:
        stats = recover.prove_partition(task.run_id, table, partition, task.buffer_mb, progress)
    return stats


class CompleteTable(_HowMixin, SoTask):
    """Load every partition of a table, verify it against the source, then finish it.

    Its requirements are the table's partitions, so the table is planned when Luigi schedules
    it (one destination transaction: CREATE TABLE, stored definition and plan, plan marker; the
    first process to get there plans, every other one reads the same plan). Every process
    sharing a luigid thus sees the same partitions and can take any of them.
    One destination transaction after verification: primary key, indexes, identity sequences,
    ANALYZE and the complete marker.
    """

    table = luigi.Parameter()
    uses = {"source_connections": 1, "target_connections": 1}

    @property
    def priority(self):
        """Just above the table's biggest partition: the table is completed (verified, keyed) as
        soon as its last partition is in, while the other slots load on; at priority 0 every
        completion waited for the very last partition. Luigi lends a task's priority to its
        requirements, so no higher: partitions stay ordered by size, biggest first, across
        tables. 0 when the table cannot be planned: requires() has already said why, and Luigi
        reads the priority outside the try that catches its errors."""
        try:
            return max(self.weights, default=0) + 1
        except Exception:  # noqa: BLE001 -- reported once, by requires()
            return 0

    def requires(self):
        return [LoadPartition(run_id=self.run_id, table=self.table, partition=i, weight=mb,
                              partitions=len(self.weights), **_how(self)) for i, mb in enumerate(self.weights)]

    @property
    def weights(self):
        """Expected MB of each partition (planning the table on first use for a run)."""
        if getattr(self, "_weights", None) is None:
            with plainly():
                for_a_run = a_worker_is_scheduling()
                known = (_planned if for_a_run else _previewed).get((self.run_id, self.table))
                weights = known or plan_weights(self, for_a_run=for_a_run)
                if not for_a_run:
                    return weights          # a later run in this process still plans
                self._weights = weights
        return self._weights

    def output(self):
        return targets.MarkerTarget("complete", self.run_id, self.table)

    def do(self):
        recover.complete_table(self.run_id, self.table, self.verify, self.buffer_mb)
        if self.mode == "bulk":
            bulk.remove_files(self.run_id, self.table)


# a table planned as one partition of under SMALL_MB (expected) is copied by a CopyTables task
# with other such tables, up to BATCH_TABLES of them or BATCH_MB in all: a task of its own (two,
# with its partition) costs a process, its sessions and scheduler round trips, far more than
# copying a small table
SMALL_MB = 16
# a table under TINY_BYTES on disk, its statistics within half a partition, is planned by its
# CopyTables as it copies it, with the rest of its group in one transaction: `so-luigi status`
# sees such a group only once it commits, which for 40 tables of under 1 MB is within a second
TINY_BYTES = 1 << 20
BATCH_TABLES = 40
BATCH_MB = 64

_covering = {}      # (run_id, table) -> the CopyTables task that copies it, as ReplicateAll grouped them


class CopyTables(_Weighted, _HowMixin, SoTask):
    """Small tables, each planned as one partition, copied one after another by one task, through
    sessions the task opens once: each in one destination transaction (load.copy_at_once: rows,
    verification against the source, key, indexes, loaded and complete markers), or, where that
    cannot be, loaded then verified and finished in two, as LoadPartition and CompleteTable do
    it. A rerun (or a retry) goes on at the first table not complete."""

    tables = luigi.ListParameter(description="the tables, in the order they are copied")

    def output(self):
        return targets.TablesComplete(self.run_id, list(self.tables))

    def run(self):
        """do(), its errors translated; each table is retried on its own (not the task again, which
        would retry each table's retries)."""
        return self.work()

    def do(self):
        with reusing_sessions():
            left = markers.not_complete(self.run_id, list(self.tables))
            fresh = [load.unplanned[(self.run_id, n)] for n in left if (self.run_id, n) in load.unplanned]
            if fresh:
                self.set_status_message(f"{len(fresh)} tables planned and copied in one transaction")
                try:
                    copied = load.copy_unplanned(self.run_id, fresh, self.verify, self.buffer_mb, self.layout,
                                                 self.mode, lambda name: Progress(self, f"{name} partition 0"))
                except Exception as exc:        # rolled back: each table alone, where errors name it
                    log.warning("%d small tables could not be copied in one transaction (%s): copying them "
                                "one by one", len(fresh), one_line(str(_translated(exc) or exc)))
                    copied = []
                # another process may have copied the rest while this one waited for their locks
                left = markers.not_complete(self.run_id, [n for n in left if n not in copied])
            for n, name in enumerate(left):
                self.set_status_message(f"{name}: table {n + 1} of {len(left)} left of {len(self.tables)}")
                self.retried(lambda: self.copy(name))

    def copy(self, name):
        progress = Progress(self, f"{name} partition 0")
        partitions = 1
        if (self.run_id, name) in load.unplanned:    # left unplanned while scheduling: planned here, as found
            partitions = len(load.ensure_planned(     # (--no-constraints applied)
                self.run_id, name, self.chunk_rows, self.layout, self.mode, bulk_settings().unlogged, self.chunk_mb,
                load.unplanned[(self.run_id, name)][0]))
        if load.copy_at_once(self.run_id, name, self.verify, self.buffer_mb, progress) is None:
            for partition in range(partitions):
                load_one(self, name, partition, progress)
            recover.complete_table(self.run_id, name, self.verify, self.buffer_mb)


def batched(sized):
    """[(table, expected MB)] of small tables in groups of at most BATCH_TABLES and BATCH_MB."""
    groups, group, mb = [], [], 0
    for name, weight in sized:
        if group and (len(group) == BATCH_TABLES or mb + weight > BATCH_MB):
            groups.append(group)
            group, mb = [], 0
        group.append((name, weight))
        mb += weight
    return groups + ([group] if group else [])


def table_task(run_id, table, how):
    """The task that copies ``table``: its CopyTables, or its own CompleteTable."""
    return _covering.get((run_id, table)) or CompleteTable(run_id=run_id, table=table, **how)


class ForeignKey(_HowMixin, SoTask):
    """One foreign key, added once its table and the table it references are complete: NOT
    VALID (a brief lock, no scan), then VALIDATE CONSTRAINT (a scan that lets writes in). Its
    target is the destination's catalog, so a rerun after a failed validation validates again."""

    table = luigi.Parameter()
    name = luigi.Parameter()
    references = luigi.Parameter()
    uses = {"target_connections": 1}

    def requires(self):
        return [table_task(self.run_id, t, _how(self)) for t in dict.fromkeys([self.table, self.references])]

    def output(self):
        return targets.ForeignKeyTarget(self.run_id, self.table, self.name)

    def complete(self):
        """In the catalog, and both tables complete at the run's snapshot: a table proven at a new
        one may have been recopied in part, which takes its keys away. The tables first: one
        planned only as it is copied (load.copy_unplanned) has no definition to look the key up by."""
        return all(r.complete() for r in self.requires()) and super().complete()

    def do(self):
        load.add_foreign_key(self.run_id, self.table, self.name, self.references)


# --- re-sync (so_luigi.sync) -----------------------------------------------------------------------

_sync_plans = {}    # (run_id, generation, table) -> weights of the units a sync checks, planned while scheduling
# up to this many ranges a table's scan found differing are recopied by its SyncTable itself, one
# after another: each task of its own costs a process, its sessions and a scheduler round trip,
# more than a small range's recopy; more are spread over the workers as SyncPartitions
INLINE_RECOPIES = 4


class SyncPartition(_Weighted, _HowMixin, SoTask):
    """One partition of a sync: compared with the source (count and checksum, or rowversion),
    recopied in one destination transaction when it differs."""

    table = luigi.Parameter()
    partition = luigi.IntParameter()
    generation = luigi.IntParameter(description="the run's sync this step belongs to")

    def output(self):
        return targets.MarkerTarget("synced", self.run_id, self.generation, self.table,
                                    sync.partition_item(self.partition))

    def do(self):
        sync_one(self, self.table, self.partition, self.generation)


def sync_one(task, table, partition, generation):
    """One partition synced (sync.sync_partition) with its progress shown on ``task``."""
    progress = Progress(task, f"{table} partition {partition}")
    outcome = sync.sync_partition(task.run_id, table, partition, generation, task.buffer_mb, progress)
    if outcome:
        progress.finish(f"{table} partition {partition}: {outcome}")


class SyncTable(_HowMixin, SoTask):
    """Every partition of a table synced, then the table verified against the source: the
    ranges compared in one scan per side (sync.scan), the ones found to differ (or every one,
    where a server cannot scan so) handed to Luigi as SyncPartitions (dynamic requirements),
    then the verdict composed from that pass."""

    table = luigi.Parameter()
    generation = luigi.IntParameter(description="the run's sync this step belongs to")

    @property
    def priority(self):
        """Just above the biggest unit: as planned while ReplicateAll was scheduled (every table
        side by side), else the stored plan's, read only."""
        try:
            weights = _sync_plans.get((self.run_id, self.generation, self.table))
            if weights is None:
                with plainly():
                    weights = planned_weights(self.run_id, self.table) or []
            return max(weights, default=0) + 1
        except Exception:  # noqa: BLE001 -- the run's checks say what is wrong
            return 0

    def run(self):
        weights = _sync_plans.get((self.run_id, self.generation, self.table)) or \
            self.retried(lambda: sync.plan(self.run_id, self.table, self.generation, self.chunk_rows))
        left, differing = self.retried(lambda: sync.scan(self.run_id, self.table, self.generation))
        if differing and len(left) <= INLINE_RECOPIES:
            for i in left:          # a few ranges the scan found differing: recopied here, one by one
                self.retried(lambda: sync_one(self, self.table, i, self.generation))
            left = []
        if left:
            yield [SyncPartition(run_id=self.run_id, table=self.table, partition=i, generation=self.generation,
                                 weight=weights[i] if i < len(weights) else 0, **_how(self)) for i in left]
        return super().run()

    def output(self):
        return targets.MarkerTarget("synced", self.run_id, self.generation, self.table, "table")

    def do(self):
        sync.verify_table(self.run_id, self.table, self.generation, self.verify)


def synced_or_copied(task, table, generation):
    """A sync's step for ``table``: SyncTable when the run completed it before, else the
    full copy's CompleteTable (a table new in the source, or one the copy had not finished)."""
    with plainly(), markers.shared_connection().cursor() as cur:
        complete = markers.is_complete(cur, task.run_id, table)
    if complete:
        return SyncTable(run_id=task.run_id, table=table, generation=generation, **_how(task))
    return CompleteTable(run_id=task.run_id, table=table, **_how(task))


class SyncForeignKey(_HowMixin, SoTask):
    """A foreign key in place and validated once both its tables are synced (a recopy drops it)."""

    table = luigi.Parameter()
    name = luigi.Parameter()
    references = luigi.Parameter()
    generation = luigi.IntParameter()
    uses = {"target_connections": 1}

    def requires(self):
        return [synced_or_copied(self, t, self.generation) for t in dict.fromkeys([self.table, self.references])]

    def output(self):
        return targets.MarkerTarget("synced", self.run_id, self.generation, self.table, f"foreign key {self.name}")

    def do(self):
        sync.foreign_key(self.run_id, self.table, self.name, self.references, self.generation)


class ReplicateAll(_HowMixin, SoTask):
    """Copy every table of the source schema (or ``--tables``) and print the per-table report.

    When Luigi schedules it, it checks both connections, finds the tables and maps every column
    type, so bad input stops the run before any data moves; its requirements are one
    CompleteTable per table.
    """

    tables = luigi.Parameter(default="", description="comma-separated subset of source tables (default: all)")
    not_consistent = luigi.BoolParameter(default=False, significant=False,
                                         description="resume even though the source snapshot the loaded "
                                                     "partitions were read at is gone (the copy is then not "
                                                     "consistent: the report says so)")
    schema_only = luigi.BoolParameter(default=False, significant=False,
                                      description="create every table with its keys, indexes, constraints and "
                                                  "defaults, and no rows")
    no_constraints = luigi.BoolParameter(default=False, significant=False,
                                         description="leave foreign keys and CHECK constraints out (for users "
                                                     "who add them later); the report lists them")
    accept_not_carried = luigi.BoolParameter(default=False, significant=False,
                                             description="exit 0 when every table is copied though the report "
                                                         "lists objects not carried (by default the run fails "
                                                         "then: the copy is not complete)")
    sync = luigi.BoolParameter(default=False, significant=False,
                               description="bring the run's finished copy up to date: compare every partition "
                                           "with the source and recopy only those that differ; tables new in "
                                           "the source are copied whole")

    @property
    def wanted(self):
        return [t.strip() for t in self.tables.split(",") if t.strip()]

    @property
    def selection(self):
        """What this run copies, as its replicated marker names it: the tables (or *), and the
        source's schemas when they are configured as more than the main one."""
        ep = source_endpoint()
        chosen = ",".join(sorted(self.wanted)) or "*"
        return chosen + (f" in {','.join(ep.schemas)}" if ep.schemas and ep.schemas != (ep.schema,) else "")

    def output(self):
        return targets.MarkerTarget("replicated", self.run_id, self.selection)

    def complete(self):
        with plainly():
            self.check_options()          # before any connection: bad options need no server to say so
        if self.schema_only or self.sync:
            return False                  # each time afresh: no marker says done
        done = super().complete()
        if done:
            # a finished run_id pointed at another source must say so, not report "done"
            with plainly(), markers.shared_connection().cursor() as cur:
                markers.check_run(cur, self.run_id, source_endpoint(), target_endpoint())
        return done

    def requires(self):
        if self.schema_only:
            return []
        if self.sync:
            how = _how(self)
            return [SyncTable(run_id=self.run_id, table=n, generation=self._generation, **how) if n in self._synced
                    else CompleteTable(run_id=self.run_id, table=n, **how) for n in self.table_names] + \
                [SyncForeignKey(run_id=self.run_id, table=t, name=k, references=r, generation=self._generation,
                                **_how(self)) for t, k, r in self.foreign_keys]
        tables = self.copy_tasks(self.table_names)
        return tables + [ForeignKey(run_id=self.run_id, table=t, name=k, references=r, **_how(self))
                         for t, k, r in self.foreign_keys]

    def copy_tasks(self, names):
        """A CompleteTable per table, but small tables of one partition (streaming mode) go by
        CopyTables, many to a task."""
        how, small, tasks = _how(self), [], []
        for name in names:
            weights = (_planned if a_worker_is_scheduling() else _previewed).get((self.run_id, name))
            if self.mode == "streaming" and weights is not None and len(weights) == 1 and weights[0] < SMALL_MB:
                small.append((name, weights[0]))
            else:
                tasks.append(CompleteTable(run_id=self.run_id, table=name, **how))
        for group in batched(small):
            task = CopyTables(run_id=self.run_id, tables=[n for n, _ in group], weight=sum(w for _, w in group), **how)
            _covering.update({(self.run_id, n): task for n, _ in group})
            tasks.append(task)
        return tasks

    @property
    def foreign_keys(self):
        """(table, key, referenced table) of the planned tables; none in a dry pass before planning."""
        if getattr(self, "_fks", None) is None:
            with plainly():
                names = self.table_names
                if not a_worker_is_scheduling():       # a dry pass reads only what is planned
                    with markers.shared_connection().cursor() as cur:
                        if not markers.marker_table_exists(cur, "tables"):
                            return []
                try:
                    self._fks = load.foreign_keys(self.run_id, names, {
                        n: load.unplanned[(self.run_id, n)][0] for n in names if (self.run_id, n) in load.unplanned})
                except SchemaError:
                    if a_worker_is_scheduling():
                        raise
                    self._fks = []
        return self._fks

    def check_options(self):
        if self.chunk_rows < 1 or self.buffer_mb < 1 or self.chunk_mb < 1:
            raise ConfigError("--chunk-rows, --chunk-mb and --buffer-mb must be at least 1")
        src, dst = load.endpoints()
        if self.mode == "bulk" and not dst.bulk_files:
            raise ConfigError("--mode bulk stages files for PostgreSQL's COPY; into SQL Server use "
                              "--mode streaming (rows go through the TDS bulk copy)")
        if self.sync and self.schema_only:
            raise ConfigError("--sync brings a copy's rows up to date and --schema-only copies no rows: pass one")
        if self.mode == "bulk" and bulk_settings().format == "binary" and not src.binary_copy:
            raise ConfigError("[bulk] format = binary (SO_BULK_FORMAT) is PostgreSQL's own COPY format and "
                              "needs a PostgreSQL source: use csv")

    @property
    def table_names(self):
        if getattr(self, "_names", None) is None:
            with plainly():
                self.check_options()
                source_ep, target_ep = source_endpoint(), target_endpoint()
                src, dst = load.endpoints()
                for_a_run = a_worker_is_scheduling()
                early = for_a_run and not (self.schema_only or self.sync)
                if early:       # its snapshot is ready by the time the tables are found
                    snapshot.prestart(self.run_id, src)
                try:
                    left_out = []           # tables with a column the destination cannot take
                    with reusing_sessions():
                        tables = load.discover(src, dst, self.wanted, refused=left_out)
                    if self.no_constraints:
                        for table in tables:
                            load.leave_out_constraints(table)
                    if for_a_run and not self.schema_only:
                        scheduler = scheduling_worker_scheduler()
                        if scheduler is not None:
                            share_caps(scheduler, log)
                    self._names = [t.run_name for t in tables]
                    if self.schema_only:
                        return self._names              # do() creates them: nothing is planned
                    if for_a_run and self.sync:
                        with dst.session() as conn:
                            markers.ensure_schema(conn)
                        self._generation = sync.begin(self.run_id, src, dst, source_ep, target_ep)
                        self._gone = [] if self.wanted else self.gone_tables(self._names)
                        self._synced        # read here, once, not by each planning thread below
                    elif self.sync:
                        self._generation = sync.peek(self.run_id)
                    elif for_a_run:
                        with dst.session() as conn:
                            markers.register_run(conn, self.run_id, source_ep, target_ep)
                            markers.note_tables_left_out(conn, self.run_id, left_out)
                        for name, why in left_out:
                            log.warning("%s is left out: %s", name, why)
                        if not self.wanted:         # a selection leaves the rest out on purpose
                            load.note_other_objects(self.run_id, src, dst)
                        snapshot.ensure(self.run_id, src, dst, self._names, self.not_consistent)
                        if not self.wanted:
                            load.carry_objects(self.run_id, "before")     # functions and such, before any table
                finally:
                    if early:
                        snapshot.discard(self.run_id)
                # plan the tables side by side (the source counts and walks each key), not one by
                # one as Luigi would ask each CompleteTable for its requirements; all at once (up
                # to 8), so the biggest table's walk starts first instead of waiting its turn
                small = self.unplanned_small(tables, src, dst) if for_a_run and not self.sync else {}
                _planned.update({(self.run_id, name): weights for name, weights in small.items()})
                rest = [t for t in tables if t.run_name not in small]
                with reusing_sessions(), ThreadPoolExecutor(max_workers=max(1, min(8, len(rest) or 1))) as pool:
                    for name, weights in zip([t.run_name for t in rest], pool.map(lambda t: self.plan_one(t, for_a_run), rest)):
                        if self.sync and for_a_run and name in self._synced:
                            _sync_plans[(self.run_id, self._generation, name)] = weights
                        else:
                            (_planned if for_a_run else _previewed)[(self.run_id, name)] = weights
                log.info("replicating %d table(s) from %s into %s", len(self._names), source_ep, target_ep)
        return self._names

    @property
    def _synced(self):
        """Tables this sync checks partition by partition: those the run completed before."""
        if getattr(self, "_complete_before", None) is None:
            with markers.shared_connection().cursor() as cur:
                self._complete_before = {n for n in self._names if markers.is_complete(cur, self.run_id, n)}
        return self._complete_before

    def unplanned_small(self, tables, src, dst):
        """{name: [expected MB]} of the tables no process has planned that their statistics, or
        the most rows their heap can hold, put within half a partition, under TINY_BYTES: their
        CopyTables plans them, in the transaction that copies them (load.copy_unplanned), not
        this process one by one before any row moves (500 tables of 20 rows: 1.5 s of planning,
        and a transaction each); noted in load.unplanned. Not where the
        destination cannot copy a table at once, for unlogged tables, nor for a table whose
        creation makes what others may share (types, sequences: created under a lock)."""
        if self.mode != "streaming" or not dst.copies_at_once or bulk_settings().unlogged or not tables:
            return {}
        with src.session() as conn:
            sizes = src.estimates(conn, tables)
        if not sizes:
            return {}
        with markers.shared_connection().cursor() as cur:
            planned = set(markers.planned_names(cur, self.run_id))
        small = {}
        for table in tables:
            if table.run_name not in sizes or table.run_name in planned or load.shares_objects(table):
                continue
            nbytes, rows, most = sizes[table.run_name]
            step = rows_per_partition(rows or most, nbytes, self.chunk_rows, self.chunk_mb)
            estimated = surely_one(rows, step)
            if nbytes >= TINY_BYTES or not (estimated or most is not None and most <= step // 2):
                continue
            rows = rows if estimated else most      # no statistics: at most that many
            load.unplanned[(self.run_id, table.run_name)] = (table, nbytes, rows)
            small[table.run_name] = [int(nbytes / 1e6)]
        with dst.session() as conn:     # a table in their way stops the run now, before any row moves
            dst.check_replaceable(conn.cursor(), [load.unplanned[(self.run_id, n)][0] for n in small])
            conn.rollback()
        return small

    def plan_one(self, table, for_a_run):
        """The expected MB of the units of ``table``: planning its sync (a table the run completed
        before) or its copy."""
        if self.sync and for_a_run and table.run_name in self._synced:
            return sync.plan(self.run_id, table.run_name, self._generation, self.chunk_rows)
        return plan_weights(CompleteTable(run_id=self.run_id, table=table.run_name, **_how(self)), table, for_a_run)

    def gone_tables(self, names):
        """Tables the run copied that the source no longer has."""
        with markers.shared_connection().cursor() as cur:
            return sorted(n for n in markers.planned_names(cur, self.run_id) if n not in names)

    def run(self):
        """The report, once every table and key is done at the run's source snapshot: those done
        at a snapshot lost during the run (so_luigi.recover) are done again first, as Luigi's
        dynamic requirements, in parallel like the rest."""
        if not (self.schema_only or self.sync):
            while True:
                with load.endpoints()[1].session() as conn:
                    stale = markers.stale(conn, self.run_id, self.table_names)
                if not any(stale):
                    break
                again = [t for t in self.requires() if not t.complete()]
                if not again:
                    raise SnapshotGone(f"run {self.run_id!r}: the source snapshot was lost during the run and "
                                       f"{stale[0]} partition(s), {stale[1]} table(s) were read at an earlier one: "
                                       "rerun the same command, which proves them at the new snapshot")
                yield again
        return super().run()

    def do(self):
        source_ep, target_ep = source_endpoint(), target_endpoint()
        if self.sync:
            names = self.table_names
            with load.endpoints()[1].session() as conn:
                copied = [n for n in names if n not in self._synced]
                text = sync.render(conn, self.run_id, self._generation, names, copied, self._gone,
                                   source_ep, target_ep)
                sync.finish(conn, self.run_id, self._generation)
            print(text, flush=True)
            return
        if self.schema_only:
            tables = load.discover(*load.endpoints(), self.wanted)
            for table in tables if self.no_constraints else []:
                load.leave_out_constraints(table)
            with load.endpoints()[1].session() as conn:
                markers.register_run(conn, self.run_id, source_ep, target_ep)
            if not self.wanted:
                load.carry_objects(self.run_id, "before")
            lines = load.create_schema(self.run_id, tables)
            if not self.wanted:
                load.carry_objects(self.run_id, "after")
            print("\n".join(lines), flush=True)
            return
        if not self.wanted:     # partitioned tables, views, triggers, ...: after every table and key
            load.carry_objects(self.run_id, "after")
        with load.endpoints()[1].session() as conn:
            text, missing = report.summary(conn, self.run_id, self.table_names, source_ep, target_ep)
            left = [] if self.accept_not_carried else report.not_carried(missing)
            if not left:
                markers.mark_replicated(conn, self.run_id, self.selection)
            else:
                markers.mark_copied(conn.cursor(), self.run_id)
                conn.commit()
        print(text, flush=True)
        if left:
            raise IncompleteCopy(f"every table is copied and verified, but {len(left)} object(s) are not carried "
                                 f"(listed under 'not carried' in the report): the copy is not complete; "
                                 f"--accept-not-carried exits 0 for such a copy")


class LoadDump(SoTask):
    """Build the [source] database from a Stack Exchange dump (folder or .7z), so a pipeline can
    make its own source first: `luigi --module so_luigi LoadDump --dump DIR` then ReplicateAll.

    Each table is replaced in its own transaction; the dump's marker is written last.
    """

    dump = luigi.Parameter(description="a dump folder of XML files or its .7z archive")
    post_history = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                       description="also load PostHistory")
    tags = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                               description="also load Tags")
    zero_fill = luigi.BoolParameter(default=False, description="SODDI's 0 for missing integers")
    uses = {"source_connections": 1}

    def output(self):
        from . import dump
        with plainly():
            return targets.DumpLoaded(dump.fingerprint(self.dump, self.post_history, self.tags, self.zero_fill))

    def do(self):
        from . import dump
        target = source_endpoint()
        counts, _ = dump.load_dump(self.dump, target, self.post_history, self.tags, self.zero_fill, log=log.info)
        dump.mark_loaded(target, self.output().key, sum(counts.values()))


@contextmanager
def plainly():
    """Errors raised while Luigi schedules (complete(), requires()) as one clear line."""
    try:
        yield
    except SoLuigiError as exc:
        _say(exc)
        raise
    except Exception as exc:
        err = _translated(exc)
        if err is None:
            raise
        _say(err)
        raise err from exc


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


count_work_done_elsewhere(SoTask)
