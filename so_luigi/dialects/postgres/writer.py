"""Building a PostgreSQL source (a Stack Exchange dump, the generated sample): a table dropped,
created with the types so_luigi maps its definition to, filled by COPY, keyed, committed."""
from .connection import ident, qualified, session
from .ddl import create_table_statements, finish_table_sql
from .destination import PostgresDestination
from .types import map_table


def replace_table(endpoint, table, rows):
    """``table`` (a definition of any dialect) in ``endpoint``'s schema with these rows; returns
    (rows, bytes)."""
    map_table(table, table.dialect or "mssql")
    dst = PostgresDestination(endpoint)
    with session(endpoint) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(endpoint.schema)}")
        cur.execute(f"DROP TABLE IF EXISTS {qualified(endpoint.schema, table.name)}")
        for statement in create_table_statements(endpoint.schema, table):
            cur.execute(statement)
        count, nbytes = dst.copy_rows(cur, table, rows)
        for statement in finish_table_sql(endpoint.schema, table):
            statement(cur) if callable(statement) else cur.execute(statement)
        conn.commit()
    return count, nbytes
