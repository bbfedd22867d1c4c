"""One moment of a PostgreSQL source for the whole run.

The first process that schedules a run starts a holder (``hold``: this module, without the
package's Luigi and tasks, see HOLDER), a process of its own session: it asks the source for a
snapshot every session can import (the source's dialect knows how: PostgreSQL's
``pg_export_snapshot()`` in a REPEATABLE READ transaction, kept open). The snapshot's name goes
into the run's marker row (``runs.source_snapshot``), and every source read of the run (planning's
counts, each partition, the verification's counts and checksums, on any worker and any host
sharing the luigid) begins by importing it: the copy equals the source as of
that moment, whatever commits meanwhile.

The holder outlives the process that started it, so a killed run resumes from the same moment.
It lets go when the run is replicated (a sync's: when the sync finishes), reset or given another snapshot, when the source drops
its session, or when no process of the run has been seen for ``[source] snapshot_grace_minutes``
(every process scheduling the run marks ``runs.seen_at`` every few seconds). A run resumed after
its snapshot is gone, or a task meeting its loss, takes a new one, at which every partition and
table read at the old one is proven before the run is done (``so_luigi.recover``); with
``--not-consistent`` they are taken as they are, and the run's row says the copy is not consistent.

Holding a snapshot keeps the source's VACUUM from removing rows deleted after it, for as long
as the run lasts (and an ``idle_in_transaction_session_timeout`` on the source ends it).
"""
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

from .config import marker_schema, section, source_endpoint, target_endpoint
from .dialects import destination, source as source_for
from .errors import ConfigError
from .state import markers

HEARTBEAT_SECONDS = 5
log = logging.getLogger("luigi-interface.so_luigi")


def grace_seconds():
    return 60 * float(os.environ.get("SO_SNAPSHOT_GRACE_MINUTES") or section("source").snapshot_grace_minutes)


# --- the run's side -----------------------------------------------------------------------------

def ensure(run_id, src, dst, tables, not_consistent=False):
    """The snapshot the run reads ``src`` at (its name), starting a holder when the run has none
    alive; None for a source that cannot share one (then ``src.consistency()`` says how it is
    read). When the run's snapshot is gone, a new one, at which what was read at the old one is
    proven (``_replace``). Marks the run as alive from this process while it lives. Under the
    run's snapshot lock: processes scheduling one run at once agree on one snapshot."""
    if not src.exports_snapshots:
        with dst.session() as conn:
            _record(conn, run_id, None, src.consistency())
        return None
    with dst.session() as conn:
        markers.lock(conn.cursor(), "snapshot", run_id)
        snapshot, consistency = markers.source_reading(conn, run_id)
        if snapshot and src.can_import(snapshot):
            conn.rollback()
            _of_run[_key(run_id)] = snapshot
            _beat(run_id)
            return snapshot
        if snapshot:
            snapshot = _replace(conn, run_id, src, snapshot, consistency, tables, not_consistent)
        else:
            snapshot, exported_at = start_holder(run_id)
            _record(conn, run_id, snapshot, f"consistent: the source as of snapshot {snapshot} (exported {exported_at})")
    _beat(run_id)
    return snapshot


def _replace(conn, run_id, src, lost, said, tables, not_consistent):
    """A new snapshot for a run whose snapshot ``lost`` is gone (``said``: how the run read until
    then), under the run's snapshot lock in ``conn``'s transaction, committed. What was read at
    the lost one is proven at the new one (so_luigi.recover), unless the run was told to take it
    as it is (``not_consistent``) or has nothing left to read (every table of ``tables``
    complete: the copy is consistent as of the lost one)."""
    loaded, unfinished = markers.run_progress(conn, run_id, tables)
    snapshot, exported_at = start_holder(run_id)
    cur = conn.cursor()
    if loaded and (not unfinished or not_consistent or (said or "").startswith("not consistent")):
        if unfinished and not (said or "").startswith("not consistent"):
            said = "not consistent: partitions read at different moments (resumed with --not-consistent)"
        markers.adopt_snapshot(cur, run_id, snapshot)
    elif loaded:
        said = (f"consistent: the source as of snapshot {snapshot} (exported {exported_at}); the partitions read at "
                f"snapshot {lost}, lost, are proven at it")
        log.warning("run %r: source snapshot %s is gone; reading at a new one, %s: the %d partition(s) read at the "
                    "lost one are proven at it (count and checksum) and recopied where they differ", run_id, lost,
                    snapshot, loaded)
    else:
        said = f"consistent: the source as of snapshot {snapshot} (exported {exported_at})"
    _record(conn, run_id, snapshot, said)
    return snapshot


def replace_lost(run_id, src, dst, lost, unplanned=()):
    """Inside a run: the snapshot to read at once ``lost`` is gone, a new one when no process of
    the run has taken one yet (under the run's snapshot lock). ``unplanned``: tables of the run
    no marker names yet (planned as they are copied): not complete, so what was read at the lost
    snapshot is proven at the new one."""
    with dst.session() as conn:
        markers.lock(conn.cursor(), "snapshot", run_id)
        recorded, said = markers.source_reading(conn, run_id)
        if recorded and recorded != lost and src.can_import(recorded):
            conn.rollback()
            _of_run[_key(run_id)] = recorded
            return recorded
        with conn.cursor() as cur:
            names = markers.planned_names(cur, run_id)
        return _replace(conn, run_id, src, recorded or lost, said, [*names, *unplanned], False)


def record(conn, run_id, snapshot, consistency):
    """The snapshot ``run_id`` reads at from now on (a sync's), and how it reads, in words."""
    _record(conn, run_id, snapshot, consistency)


def keep_alive(run_id):
    _beat(run_id)


def _key(run_id):
    return os.getpid(), target_endpoint().url.raw, run_id


def _record(conn, run_id, snapshot, consistency):
    """In ``conn``'s transaction, committed."""
    _of_run[_key(run_id)] = snapshot
    markers.record_reading(conn, run_id, snapshot, consistency)


_of_run = {}


def of_run(run_id):
    """The run's recorded snapshot (None when it has none), read once per process."""
    key = _key(run_id)
    if key not in _of_run:
        known = markers.run_known(run_id)
        _of_run[key] = markers.source_reading(markers.shared_connection(), run_id)[0] if known else None
    return _of_run[key]


_beating = {}


def _beat(run_id):
    """A thread marking the run alive (runs.seen_at) while this process lives."""
    if (os.getpid(), run_id) in _beating:
        return
    dst = destination(target_endpoint())

    def beat():
        conn = None
        while True:
            try:
                conn = conn or dst.connect(autocommit=True)
                markers.mark_seen(conn.cursor(), run_id)
            except Exception:  # noqa: BLE001 -- a lost connection is opened again at the next beat
                conn = None
            time.sleep(HEARTBEAT_SECONDS)
    thread = threading.Thread(target=beat, name="so_luigi-heartbeat", daemon=True)
    thread.start()
    _beating[(os.getpid(), run_id)] = thread


_early = {}         # (pid, target, run_id) -> (a holder started ahead (prestart), when), not yet taken
EARLY_SECONDS = 30  # an older one is replaced: it quits when no run names its snapshot a minute on


def prestart(run_id, src):
    """Start the holder of a run that has no snapshot yet now, while the run is being discovered:
    it takes a Python start and an import (0.3 s) to say its snapshot, which ``ensure`` then
    waits for no longer. One ``ensure`` does not take is stopped by ``discard``."""
    key = _key(run_id)
    if not src.exports_snapshots or key in _early:
        return
    try:
        if markers.run_known(run_id) and of_run(run_id):
            return
    except Exception:  # noqa: BLE001 -- said in its turn, by the steps that need the destination
        return
    _early[key] = (_spawn(run_id), time.monotonic())


def discard(run_id):
    """Stop a holder started ahead that ``ensure`` did not take (the run read at its snapshot
    already, or failed before): it holds a snapshot nobody reads at."""
    holder, _ = _early.pop(_key(run_id), (None, None))
    if holder is not None:
        _stop(holder)


def _stop(holder):
    holder.kill()
    holder.wait()
    holder.stdout.close()


def _spawn(run_id):
    src_ep, dst_ep = source_endpoint(), target_endpoint()
    env = dict(os.environ, SO_SOURCE_URL=src_ep.url.raw, SO_SOURCE_SCHEMA=src_ep.schema,
               SO_SOURCE_SCHEMAS=",".join(src_ep.schemas),
               SO_TARGET_URL=dst_ep.url.raw, SO_TARGET_SCHEMA=dst_ep.schema, SO_MARKER_SCHEMA=marker_schema(),
               SO_SNAPSHOT_GRACE_MINUTES=str(grace_seconds() / 60))
    env["SO_SCHEMA_MAP"] = ",".join(f"{old}:{new}" for old, new in dst_ep.schema_map)
    if not src_ep.schemas:          # every schema: the main one named is not the only one
        env.pop("SO_SOURCE_SCHEMA")
    return subprocess.Popen([sys.executable, "-c", HOLDER, os.path.dirname(os.path.abspath(__file__)), run_id],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True, text=True)


# The holder's start, without the package's __init__ (which imports Luigi and the tasks: 0.15 s
# of the 0.35 s a run's first read waited for its snapshot): every setting it reads comes in its
# environment (_spawn).
HOLDER = ("import sys, types; package = types.ModuleType('so_luigi'); package.__path__ = [sys.argv[1]]; "
          "sys.modules['so_luigi'] = package; from so_luigi.snapshot import hold; sys.exit(hold(sys.argv[2]))")


def start_holder(run_id):
    """Start the holder process (or take the one started ahead); (snapshot name, when exported)
    once it has exported one."""
    holder, started = _early.pop(_key(run_id), (None, None))
    if holder is not None and time.monotonic() - started > EARLY_SECONDS:
        _stop(holder)           # it lets go of a snapshot no run names within a minute: too close
        holder = None
    holder = holder or _spawn(run_id)
    line = holder.stdout.readline().strip()
    holder.stdout.close()
    if not line.startswith("{"):
        holder.wait(timeout=30)
        raise ConfigError(f"source snapshot for run {run_id!r}: {line or 'the holder process exited'}")
    said = json.loads(line)
    return said["snapshot"], said["exported_at"]


# --- the holder ---------------------------------------------------------------------------------

def hold(run_id, poll_seconds=2.0):
    """Export a snapshot, say its name on stdout, then keep it until the run no longer needs it."""
    src, dst = source_for(source_endpoint()), destination(target_endpoint())
    try:
        conn, snapshot, exported_at = src.export_snapshot()
    except Exception as exc:  # noqa: BLE001 -- said to the run, which raises it
        print(f"cannot export a snapshot of the source: {str(exc).strip().splitlines()[0]}", flush=True)
        return 1
    print(json.dumps({"snapshot": snapshot, "exported_at": exported_at, "pid": os.getpid(),
                      "host": socket.gethostname()}), flush=True)
    sys.stdout.close()
    grace = grace_seconds()
    watch = None
    started = time.monotonic()
    recorded = [False, started]
    while True:
        time.sleep(poll_seconds)
        if not src.snapshot_held(conn):     # the source dropped the session: nothing left to hold
            return 0
        try:
            watch = watch or dst.connect(autocommit=True)
            if not _still_needed(watch, run_id, snapshot, grace, recorded):
                break
        except Exception:  # noqa: BLE001 -- the destination away: hold on, within the grace period
            watch = None
            if time.monotonic() - started > grace:
                break
            continue
        started = time.monotonic()
    conn.close()
    return 0


def _still_needed(conn, run_id, snapshot, grace, recorded):
    """Whether the run still reads at ``snapshot``. ``recorded``: a one-element list, set once the
    run's row names it (until then, for a minute, the run is still recording it)."""
    view = markers.holder_view(conn.cursor(), run_id, snapshot)
    if view is not None and view[0] == snapshot:
        recorded[0] = True
    elif not recorded[0] and time.monotonic() - recorded[1] < 60:
        return True
    if view is None:
        return False
    reading, idle, replicated, syncing = view
    if reading != snapshot or idle is None or idle > grace:
        return False
    # a replicated run's snapshot is a sync's: held until that sync finishes
    return syncing if replicated else True


if __name__ == "__main__":
    sys.exit(hold(sys.argv[1]))
