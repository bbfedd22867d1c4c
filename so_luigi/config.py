"""Settings and URL parsing; nothing here does I/O at import, and nothing here needs Luigi.

``[source]`` and ``[target]`` in luigi.cfg hold ``url`` and optional ``schema``; the environment
variables ``SO_SOURCE_URL`` / ``SO_TARGET_URL`` (and ``SO_SOURCE_SCHEMA`` / ``SO_TARGET_SCHEMA``)
override them. URLs carry passwords, so they are never Luigi parameters (those end up in task ids
and the scheduler UI) and are only ever shown through ``DbUrl.redacted``.
"""
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigError

SCHEMES = {"postgresql": "postgres", "postgres": "postgres", "mssql": "mssql", "sqlserver": "mssql"}
DEFAULT_SCHEMA = {"postgres": "public", "mssql": "dbo"}


# Every setting of luigi.cfg so_luigi reads: section -> key -> (default, description[, choices]).
# The Luigi layer (luigi_config) makes these luigi.Config sections, so luigi.cfg (and Luigi's
# --source-url style flags) set them; without it, the engine reads the defaults and SO_* variables.
SETTINGS = {
    "source": {
        "url": ("", "source database URL (mssql:// or postgresql://)"),
        "schema": ("", "the source's main schema (default dbo / public): with `schemas` unset, the only one "
                       "copied; it goes into [target] schema"),
        "schemas": ("", "the schemas to copy, comma-separated (default: every user schema when `schema` is unset); "
                        "env SO_SOURCE_SCHEMAS"),
        "snapshot_grace_minutes": (30.0, "PostgreSQL sources: how long the run's snapshot is kept once no "
                                         "process of the run is alive, so a rerun resumes from the same moment"),
    },
    "target": {
        "url": ("", "destination URL (postgresql:// or mssql://)"),
        "schema": ("", "where the source's main schema goes (default public; dbo into SQL Server)"),
        "schema_map": ("", "other schemas renamed, `source:destination` pairs, comma-separated (default: each "
                           "into the same-named schema); env SO_SCHEMA_MAP"),
        "marker_schema": ("so_luigi", "schema of the marker tables"),
        "owners": (False, "PostgreSQL from PostgreSQL: also carry the owners and privileges of the objects "
                          "(the roles must exist in the destination)"),
    },
    "data": {
        "nul": ("fail", "U+0000 in text (PostgreSQL cannot store it): fail naming table, key and column, or "
                        "strip / replace it, counting every changed value", ("fail", "strip", "replace")),
        "nul_replacement": ("\ufffd", "what replaces U+0000 with nul = replace"),
    },
    "retries": {
        "transient": (3, "retries of a task after a transient error (lost connection, server restart); 0 = none"),
        "delay_seconds": (10.0, "wait before each retry"),
    },
    "bulk": {
        "dir": (".so_luigi/bulk", "where bulk mode writes partition files: a path or a smart_open URI "
                                  "(s3://...); env SO_BULK_DIR overrides"),
        "server_dir": ("", "where the destination server sees `dir` (default: the same path); env SO_BULK_SERVER_DIR"),
        "compress": (False, "gzip the partition files"),
        "format": ("csv", "csv, or PostgreSQL's binary COPY format (a PostgreSQL source whose column types the "
                          "destination keeps); env SO_BULK_FORMAT", ("csv", "binary")),
        "keep_files": (False, "keep the files after their table is complete"),
        "unlogged": (False, "load into UNLOGGED tables, SET LOGGED when complete"),
    },
}
BULK_FORMATS = SETTINGS["bulk"]["format"][2]

_readers = {}       # section -> a function giving its values (luigi_config registers luigi.Config ones)


def read_sections_with(readers):
    """Where ``section`` reads from: {name: function returning an object with the section's keys}."""
    _readers.update(readers)


def section(name):
    """The values of luigi.cfg's [``name``] (attributes), as the Luigi layer reads them; its
    defaults when no reader is registered."""
    if name in _readers:
        return _readers[name]()
    return SimpleNamespace(**{key: spec[0] for key, spec in SETTINGS[name].items()})


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
    values = section("bulk")
    where = os.environ.get("SO_BULK_DIR") or values.dir
    if "://" not in where:
        where = os.path.abspath(where)
    server = os.environ.get("SO_BULK_SERVER_DIR") or values.server_dir or where
    flag = os.environ.get("SO_BULK_KEEP_FILES")
    fmt = os.environ.get("SO_BULK_FORMAT") or values.format
    if fmt not in BULK_FORMATS:
        raise ConfigError(f"SO_BULK_FORMAT={fmt!r}: use {' or '.join(BULK_FORMATS)}")
    return BulkSettings(where, server, values.compress, values.keep_files if flag is None else flag == "1",
                        values.unlogged, fmt)


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
    options: object = None          # a SQL Server URL's checked query (mssql_options)

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
    options = None
    if dialect == "mssql":
        if not host:
            raise ConfigError(f"bad {role} URL in {where}: mssql:// needs a host")
        from . import mssql_options
        host, options = mssql_options.parse(query, host, f"bad {role} URL in {where}")
    return DbUrl(raw=url, dialect=dialect, user=unquote(parts.username or ""),
                 password=unquote(parts.password or ""), host=host, port=port or 0,
                 database=database, query=query, options=options)


@dataclass(frozen=True)
class Endpoint:
    """A database plus the schemas so_luigi reads or writes there.

    ``schema`` is the main one: a source's ``public`` or ``dbo`` (or the one configured), a
    destination's the schema that one goes into. A source's ``schemas`` are the ones it copies,
    () for every user schema; a destination's ``schema_map`` renames the others, ((source,
    destination), ...): unnamed ones keep their name."""

    url: DbUrl
    schema: str
    role: str
    schemas: tuple = ()
    schema_map: tuple = ()

    def __str__(self):
        if self.role == "source" and len(self.schemas) != 1:
            return f"{self.role} {self.url.redacted} schemas {', '.join(self.schemas) or '(every user schema)'}"
        return f"{self.role} {self.url.redacted} schema {self.schema}"


def _names(text):
    return tuple(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))


_endpoints = {}     # (role, its settings) -> Endpoint: read thousands of times a run


def _endpoint(role, section):
    env = tuple(os.environ.get(f"SO_{name}") for name in (f"{role.upper()}_URL", f"{role.upper()}_SCHEMA",
                                                          "SOURCE_SCHEMAS", "SCHEMA_MAP"))
    key = (role, env, section.url, section.schema, getattr(section, "schemas", None),
           getattr(section, "schema_map", None))
    if key not in _endpoints:
        _endpoints[key] = _parsed_endpoint(role, section)
    return _endpoints[key]


def _parsed_endpoint(role, section):
    url = parse_url(os.environ.get(f"SO_{role.upper()}_URL") or section.url, role)
    named = os.environ.get(f"SO_{role.upper()}_SCHEMA") or section.schema
    schema = named or DEFAULT_SCHEMA[url.dialect]
    if role == "source":
        schemas = _names(os.environ.get("SO_SOURCE_SCHEMAS") or section.schemas) or ((named,) if named else ())
        return Endpoint(url, schema, role, schemas=schemas)
    pairs = []
    for pair in _names(os.environ.get("SO_SCHEMA_MAP") or section.schema_map):
        old, colon, new = pair.partition(":")
        if not colon or not old.strip() or not new.strip():
            raise ConfigError(f"[target] schema_map (or SO_SCHEMA_MAP): {pair!r} is not source:destination")
        pairs.append((old.strip(), new.strip()))
    return Endpoint(url, schema, role, schema_map=tuple(pairs))


def source_endpoint():
    """The configured source, read when called (so tests and env overrides apply)."""
    return _endpoint("source", section("source"))


def target_endpoint():
    """The configured destination: PostgreSQL or SQL Server."""
    return _endpoint("target", section("target"))


def destination_schema(schema, source_ep, target_ep):
    """Where the source's ``schema`` goes: as [target] schema_map says, else the source's main
    schema into the destination's main one, and any other into the same-named schema."""
    for old, new in target_ep.schema_map:
        if old == schema:
            return new
    return target_ep.schema if schema == source_ep.schema else schema


def marker_schema():
    name = os.environ.get("SO_MARKER_SCHEMA") or section("target").marker_schema
    if "%" in name:     # marker queries pass parameters, and the drivers read '%' as one
        raise ConfigError(f"marker schema {name!r}: '%' is not allowed there "
                          f"(set [target] marker_schema or SO_MARKER_SCHEMA to another name)")
    return name
