"""Building a SQL Server source (a Stack Exchange dump, the generated sample): a table dropped,
created as declared, filled, keyed."""
from ...stream import batched
from .bulk import bulk_columns, bulk_load, insert_sql
from .connection import connect, ident, literal, qualified
from .ddl import declared_table_sql


def replace_table(endpoint, table, rows):
    """``table`` (a SQL Server definition) in ``endpoint``'s schema with these rows; returns
    (rows, None). A definition with IDENTITY columns is filled by INSERTs under IDENTITY_INSERT
    (the bulk copy would renumber them: fine for test data, slow); one without (a dump, as SODDI
    loads it) by the bulk copy."""
    conn = connect(endpoint, autocommit=True)
    try:
        q = qualified(endpoint.schema, table.name)
        cur = conn.cursor()
        cur.execute(f"IF OBJECT_ID({literal(q)}, N'U') IS NOT NULL DROP TABLE {q}")
        cur.execute(declared_table_sql(endpoint.schema, table))
        if table.identity_columns:
            cur.execute(f"SET IDENTITY_INSERT {q} ON")
            per = max(1, min(1000, 2000 // len(table.columns)))   # 2,100 parameters at most
            count = 0
            for batch in batched(rows, per):
                cur.execute(insert_sql(table, len(batch)), tuple(v for row in batch for v in row))
                count += len(batch)
            cur.execute(f"SET IDENTITY_INSERT {q} OFF")
        else:
            count = bulk_load(conn, endpoint.schema, table, bulk_columns(table, "mssql"), batched(rows, 5000), 5000)
        if table.primary_key:
            cur.execute(f"ALTER TABLE {q} ADD CONSTRAINT {ident(table.pk_name)} PRIMARY KEY CLUSTERED "
                        f"({', '.join(ident(c) for c in table.primary_key)})")
        return count, None
    finally:
        conn.close()
