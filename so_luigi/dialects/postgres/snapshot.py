"""One moment of a PostgreSQL source for every session of a run: a holder's transaction exports
its snapshot (``pg_export_snapshot``), every reading session imports it (``SET TRANSACTION
SNAPSHOT``). The run's side of it (the holder process, the run's marker row) is ``so_luigi.snapshot``."""
import psycopg2

from ...errors import SnapshotGone
from .connection import keep, translate

HOLDER_NAME = "so_luigi snapshot holder"      # the holder's application_name on the source


def export(conn):
    """Open a REPEATABLE READ transaction on ``conn`` and export its snapshot: (name, when, in UTC
    words). The snapshot lives as long as that transaction."""
    keep(conn, False)           # its session is renamed: never handed to another session
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET application_name = %s", (HOLDER_NAME,))
    conn.autocommit = False
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_export_snapshot(), to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                    "'YYYY-MM-DD HH24:MI:SS \"UTC\"')")
        return cur.fetchone()


def still_held(conn):
    """Whether the exporting transaction (and so its snapshot) is still there."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    except psycopg2.Error:
        return False


def enter(conn, snapshot):
    """Begin ``conn``'s read-only transaction at ``snapshot``; SnapshotGone when it cannot be."""
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
    except psycopg2.Error as exc:
        conn.close()
        raise SnapshotGone(f"source snapshot {snapshot} is gone ({translate(exc)}): its holder "
                           "exited; rerun ReplicateAll, which reads at a new one", snapshot) from None
