"""Throwaway PostgreSQL servers for the demo and the tests: started on a free port, stopped after.

``start()`` prefers the machine's own PostgreSQL binaries (Debian's /usr/lib/postgresql/N/bin)
and falls back to the pip-installed ``pgserver``. PostgreSQL refuses to run as root, so as root
the cluster is initialised and started as the ``postgres`` user.
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


def _debian_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    pg_ctl = shutil.which("pg_ctl")
    return os.path.dirname(pg_ctl) if pg_ctl else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A running server; ``url(db)`` gives a postgresql:// URL, ``stop()`` removes everything."""

    def __init__(self, kind, host, port, user, stop, workdir):
        self.kind, self.host, self.port, self.user = kind, host, port, user
        self._stop, self.workdir = stop, workdir

    def url(self, database="postgres"):
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name):
        from ..config import Endpoint, parse_url
        from ..dialects.postgres.connection import connect
        conn = connect(Endpoint(parse_url(self.url(), "target"), "public", "target"), autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')   # a snapshot holder may linger
            cur.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        conn.close()
        return self.url(name)

    def stop(self):
        try:
            self._stop()
        finally:
            if self.workdir:                 # None: a kept cluster
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _as_postgres(cmd):
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--"] + cmd


def start_debian(bindir, settings=(), workdir=None):
    """A cluster in a new temporary folder, or in ``workdir`` (kept, and reused when it exists)."""
    keep = workdir is not None
    workdir = workdir or tempfile.mkdtemp(prefix="so_luigi_pg_")
    os.makedirs(workdir, exist_ok=True)
    data = os.path.join(workdir, "data")
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root needs a 'postgres' user to start PostgreSQL") from None
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
    port = free_port()
    if os.path.exists(os.path.join(data, "PG_VERSION")):
        return _start_existing(bindir, workdir, data, port, settings, keep)
    subprocess.run(_as_postgres([f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust",
                                 "-E", "UTF8", "--locale=C", "--no-sync"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # trust on loopback, except the role so_pw, which must give its password (tests of
    # wrong-password handling need one role that checks)
    with open(os.path.join(data, "pg_hba.conf"), "w") as hba:
        hba.write("local all all trust\n"
                  "host all so_pw 127.0.0.1/32 scram-sha-256\n"
                  "host all all 127.0.0.1/32 trust\n")
    return _start_existing(bindir, workdir, data, port, settings, keep)


def _start_existing(bindir, workdir, data, port, settings, keep):
    opts = ["-c", f"port={port}", "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={workdir}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200", "-c", "shared_buffers=256MB", "-c", "max_wal_size=4GB"]
    for setting in settings:
        opts += ["-c", setting]
    subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(workdir, "log"),
                                 "-w", "-t", "60", "-o", " ".join(opts), "start"]),
                   check=True, stdout=subprocess.DEVNULL)

    def stop():
        subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "fast" if keep else "immediate",
                                     "-w", "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cluster = Cluster("debian", "127.0.0.1", port, "postgres", stop, None if keep else workdir)

    def restart():
        """Restart the server (every session drops), for the fault tests."""
        subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "-o",
                                     " ".join(opts), "restart"]), check=True, stdout=subprocess.DEVNULL)
    cluster.restart = restart
    return cluster


def start_pgserver(workdir=None):
    import pgserver
    workdir = workdir or tempfile.mkdtemp(prefix="so_luigi_pgserver_")
    server = pgserver.get_server(workdir, cleanup_mode="stop")
    uri = server.get_uri()                  # postgresql://postgres:@/postgres?host=/socket/dir
    socket_dir = uri.split("host=", 1)[1]
    info = server.get_postmaster_info()
    port = getattr(info, "port", None) or 5432
    cluster = Cluster("pgserver", socket_dir, port, "postgres", server.cleanup, workdir)
    cluster.url = lambda database="postgres": f"postgresql://postgres@/{database}?host={socket_dir}"
    return cluster


def start(prefer=None, settings=(), workdir=None):
    """Start a server: ``prefer`` is 'debian', 'pgserver' or None (Debian's binaries when present);
    with ``workdir`` the cluster lives there and is kept (Debian's binaries only)."""
    prefer = prefer or os.environ.get("SO_TEST_PG", "")
    bindir = _debian_bindir()
    if prefer != "pgserver" and bindir:
        return start_debian(bindir, settings, workdir)
    if prefer == "debian":
        raise RuntimeError("no PostgreSQL binaries found (install Debian's postgresql package)")
    return start_pgserver()


if __name__ == "__main__":
    c = start()
    print(c.url())
    try:
        while True:
            time.sleep(3600)
    finally:
        c.stop()
