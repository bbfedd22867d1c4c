"""One module per database, each with the same functions: connect, schema_exists, list_tables,
describe, count_and_boundaries."""


def module(endpoint):
    from . import mssql, postgres
    return {"postgres": postgres, "mssql": mssql}[endpoint.url.dialect]


def connect(endpoint):
    return module(endpoint).connect(endpoint)


def find_tables(endpoint, conn, wanted=None):
    """Base tables of the endpoint's schema, or the ``wanted`` subset; unknown names fail clearly."""
    from ..errors import SchemaError
    mod = module(endpoint)
    if not mod.schema_exists(conn, endpoint.schema):
        raise SchemaError(f"schema {endpoint.schema!r} not found in {endpoint.role} "
                          f"{endpoint.url.redacted} (set [{endpoint.role}] schema)")
    names = mod.list_tables(conn, endpoint.schema)
    if not wanted:
        if not names:
            raise SchemaError(f"schema {endpoint.schema!r} of {endpoint.role} {endpoint.url.redacted} "
                              "has no tables")
        return names
    missing = [w for w in wanted if w not in names]
    if missing:
        hints = []
        for w in missing:
            same = [n for n in names if n.lower() == w.lower()]
            hints.append(f"{w!r}" + (f" (did you mean {same[0]!r}?)" if same else ""))
        raise SchemaError(f"table {', '.join(hints)} not found in {endpoint.role} schema "
                          f"{endpoint.schema!r}; tables there: {', '.join(names) or '(none)'}")
    return list(wanted)


def connect_target(endpoint, autocommit=False):
    """A connection to the destination (PostgreSQL or SQL Server), in a transaction unless autocommit."""
    return module(endpoint).connect(endpoint, autocommit=autocommit)


def session(endpoint):
    """A transaction on ``endpoint``: rolled back on any error, always closed."""
    return module(endpoint).session(endpoint)
