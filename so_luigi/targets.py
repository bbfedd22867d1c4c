"""The luigi Targets of so_luigi's tasks: each one asks the engine whether a step is done.

* ``MarkerTarget``: a row in the marker tables (``state.markers.marker_exists``);
* ``TablesComplete``: every table of a group complete;
* ``BulkTarget``: a partition's bulk-file manifest, written for the plan the partition has now;
* ``ForeignKeyTarget``: a foreign key in the destination's catalog, as valid as the source's;
* ``DumpLoaded``: the dump a source database was built from.
"""
import luigi

from . import bulk
from .state import markers


class MarkerTarget(luigi.Target):
    """A row in the marker tables; exists() is one indexed lookup in the destination.

    kind is 'loaded', 'complete', 'replicated' or 'synced'."""

    def __init__(self, kind, *key):
        self.kind = kind
        self.key = key

    def exists(self):
        return markers.marker_exists(self.kind, *self.key)

    def __repr__(self):
        return f"MarkerTarget({self.kind}, {', '.join(map(str, self.key))})"


class TablesComplete(luigi.Target):
    """Every one of ``tables`` complete (a CopyTables task's): one query for them all."""

    def __init__(self, run_id, tables):
        self.run_id, self.tables = run_id, tables

    def exists(self):
        return not markers.not_complete(self.run_id, self.tables)


class BulkTarget(luigi.Target):
    """A partition's manifest file (local path or smart_open URI), written for the partition as
    planned now: ``planned()`` gives (plan id, lo, hi), None when the table is not planned. A
    manifest of another plan (a table reset and planned again, a run of an earlier release) is
    no target: the partition is extracted again, over it."""

    def __init__(self, path, planned):
        self.path = path
        self.planned = planned

    def exists(self):
        return bulk.manifest_matches(self.path, self.planned)


class ForeignKeyTarget(luigi.Target):
    """In the destination's catalog: the key is there, validated as the source's is."""

    def __init__(self, run_id, table, name):
        self.run_id, self.table, self.name = run_id, table, name

    def exists(self):
        from . import load
        return load.foreign_key_done(self.run_id, self.table, self.name)


class DumpLoaded(luigi.Target):
    """A row in the dumps table of the database a dump was loaded into (in the marker schema,
    outside its data schema, so a replication of that schema never copies it)."""

    def __init__(self, key):
        self.key = key

    def exists(self):
        from . import dump
        from .config import source_endpoint
        return dump.is_loaded(source_endpoint(), self.key)
