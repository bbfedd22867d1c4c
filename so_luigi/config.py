"""Connection settings and URL parsing; nothing here does I/O at import.

``[source]`` and ``[target]`` in luigi.cfg hold ``url`` and optional ``schema``; the environment
variables ``SO_SOURCE_URL`` / ``SO_TARGET_URL`` (and ``SO_SOURCE_SCHEMA`` / ``SO_TARGET_SCHEMA``)
override them. URLs carry passwords, so they are never Luigi parameters (those end up in task ids
and the scheduler UI) and are only ever shown through ``DbUrl.redacted``.
"""
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import luigi
import luigi.configuration

from .errors import ConfigError

# Luigi settings so_luigi needs wherever it runs: Luigi reads luigi.cfg only from the working
# directory (or LUIGI_CONFIG_PATH), and its own defaults exit 0 when a task failed and grant one
# unit of an unconfigured resource. ``apply_luigi_defaults`` fills in each key no config file
# set, so a user's luigi.cfg still overrides every one.
LUIGI_DEFAULTS = {
    # non-zero exit codes when anything failed or could not run (Luigi's own are all 0)
    "retcode": {"already_running": 10, "missing_data": 20, "not_run": 25, "task_failed": 30,
                "scheduling_error": 35, "unhandled_exception": 40},
    # connections each database sees, whatever the number of workers and hosts sharing a luigid
    "resources": {"source_connections": 8, "target_connections": 16},
    "core": {"log_level": "INFO", "autoload_range": "false"},
}


def apply_luigi_defaults():
    """Set every key of LUIGI_DEFAULTS that no Luigi config file set (public parser API only:
    has_option, add_section, set). Done when so_luigi is imported, before Luigi reads [retcode]
    or its scheduler reads [resources]."""
    cfg = luigi.configuration.get_config()
    typed = not isinstance(cfg, luigi.configuration.LuigiConfigParser)     # TOML keeps values typed
    for section, values in LUIGI_DEFAULTS.items():
        for key, value in values.items():
            if cfg.has_option(section, key):
                continue
            if not typed and not cfg.has_section(section):
                cfg.add_section(section)
            cfg.set(section, key, value if typed else str(value))

SCHEMES = {"postgresql": "postgres", "postgres": "postgres", "mssql": "mssql", "sqlserver": "mssql"}
DEFAULT_SCHEMA = {"postgres": "public", "mssql": "dbo"}


class source(luigi.Config):  # noqa: N801 -- the class name is the luigi.cfg section name
    url = luigi.Parameter(default="", description="source database URL (mssql:// or postgresql://)")
    schema = luigi.Parameter(default="", description="source schema (default dbo / public)")
    snapshot_grace_minutes = luigi.FloatParameter(
        default=30.0, description="PostgreSQL sources: how long the run's snapshot is kept once no process "
                                  "of the run is alive, so a rerun resumes from the same moment")


class target(luigi.Config):  # noqa: N801
    url = luigi.Parameter(default="", description="destination URL (postgresql:// or mssql://)")
    schema = luigi.Parameter(default="", description="destination schema (default public)")
    marker_schema = luigi.Parameter(default="so_luigi", description="schema of the marker tables")


class data(luigi.Config):  # noqa: N801
    nul = luigi.ChoiceParameter(choices=("fail", "strip", "replace"), default="fail",
                                description="U+0000 in text (PostgreSQL cannot store it): fail naming table, "
                                            "key and column, or strip / replace it, counting every changed value")
    nul_replacement = luigi.Parameter(default="\ufffd", description="what replaces U+0000 with nul = replace")


class retries(luigi.Config):  # noqa: N801
    transient = luigi.IntParameter(default=3, description="retries of a task after a transient error "
                                                          "(lost connection, server restart); 0 = none")
    delay_seconds = luigi.FloatParameter(default=10.0, description="wait before each retry")


BULK_FORMATS = ("csv", "binary")


class bulk(luigi.Config):  # noqa: N801
    dir = luigi.Parameter(default=".so_luigi/bulk",
                          description="where bulk mode writes partition files: a path or a smart_open URI "
                                      "(s3://...); env SO_BULK_DIR overrides")
    server_dir = luigi.Parameter(default="", description="where the destination server sees `dir` "
                                                        "(default: the same path); env SO_BULK_SERVER_DIR")
    compress = luigi.BoolParameter(default=False, description="gzip the partition files")
    format = luigi.ChoiceParameter(choices=BULK_FORMATS, default="csv",
                                   description="csv, or PostgreSQL's binary COPY format (a PostgreSQL source "
                                               "whose column types the destination keeps); env SO_BULK_FORMAT")
    keep_files = luigi.BoolParameter(default=False, description="keep the files after their table is complete")
    unlogged = luigi.BoolParameter(default=False, description="load into UNLOGGED tables, SET LOGGED when complete")


@dataclass(frozen=True)
class BulkSettings:
    dir: str
    server_dir: str
    compress: bool
    keep_files: bool
    unlogged: bool
    format: str = "csv"

    @property
    def is_local(self):
        return "://" not in self.dir


def bulk_settings():
    """[bulk] with env overrides; a local dir is made absolute (the server needs absolute paths)."""
    section = bulk()
    where = os.environ.get("SO_BULK_DIR") or section.dir
    if "://" not in where:
        where = os.path.abspath(where)
    server = os.environ.get("SO_BULK_SERVER_DIR") or section.server_dir or where
    flag = os.environ.get("SO_BULK_KEEP_FILES")
    fmt = os.environ.get("SO_BULK_FORMAT") or section.format
    if fmt not in BULK_FORMATS:
        raise ConfigError(f"SO_BULK_FORMAT={fmt!r}: use {' or '.join(BULK_FORMATS)}")
    return BulkSettings(where, server, section.compress, section.keep_files if flag is None else flag == "1",
                        section.unlogged, fmt)


@dataclass(frozen=True)
class DbUrl:
    """A parsed database URL. ``str()`` never shows the password."""

    raw: str = field(repr=False)
    dialect: str
    user: str
    password: str = field(repr=False)
    host: str
    port: int
    database: str
    query: tuple = ()

    @property
    def redacted(self):
        auth = f"{self.user}:***@" if self.password else (f"{self.user}@" if self.user else "")
        host = self.host or ""
        port = f":{self.port}" if self.port else ""
        scheme = "postgresql" if self.dialect == "postgres" else self.dialect
        return f"{scheme}://{auth}{host}{port}/{self.database}"

    def __str__(self):
        return self.redacted


def parse_url(url, role="source"):
    """Parse ``url`` or raise ConfigError naming the setting to fix (never echoing the password)."""
    where = f"[{role}] url (or SO_{role.upper()}_URL)"
    if not url:
        raise ConfigError(f"no {role} database configured: set {where}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad {role} URL in {where}: {exc}") from None
    dialect = SCHEMES.get(parts.scheme.lower())
    if dialect is None:
        raise ConfigError(
            f"bad {role} URL in {where}: scheme {parts.scheme or '(none)'!r} is not one of "
            "mssql://, postgresql://")
    query = tuple(parse_qsl(parts.query))
    host = unquote(parts.hostname or "") or dict(query).get("host", "")
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ConfigError(f"bad {role} URL in {where}: no database name after the host")
    if dialect == "mssql" and not host:
        raise ConfigError(f"bad {role} URL in {where}: mssql:// needs a host")
    return DbUrl(raw=url, dialect=dialect, user=unquote(parts.username or ""),
                 password=unquote(parts.password or ""), host=host, port=port or 0,
                 database=database, query=query)


@dataclass(frozen=True)
class Endpoint:
    """A database plus the schema so_luigi reads or writes there."""

    url: DbUrl
    schema: str
    role: str

    def __str__(self):
        return f"{self.role} {self.url.redacted} schema {self.schema}"


def _endpoint(role, section):
    url = parse_url(os.environ.get(f"SO_{role.upper()}_URL") or section.url, role)
    schema = os.environ.get(f"SO_{role.upper()}_SCHEMA") or section.schema or DEFAULT_SCHEMA[url.dialect]
    return Endpoint(url, schema, role)


def source_endpoint():
    """The configured source, read when called (so tests and env overrides apply)."""
    return _endpoint("source", source())


def target_endpoint():
    """The configured destination: PostgreSQL or SQL Server."""
    return _endpoint("target", target())


def marker_schema():
    name = os.environ.get("SO_MARKER_SCHEMA") or target().marker_schema
    if "%" in name:     # marker queries pass parameters, and the drivers read '%' as one
        raise ConfigError(f"marker schema {name!r}: '%' is not allowed there "
                          f"(set [target] marker_schema or SO_MARKER_SCHEMA to another name)")
    return name
