-- Columns of one table in order. Identity is only in sys.columns, joined by object and column id;
-- its seed and increment from IDENT_SEED / IDENT_INCR (a table has one identity at most; Babelfish's
-- sys.identity_columns repeats its rows). Sparse columns, a column set (the XML view of a table's
-- sparse columns) and the XML schema collection typing an xml column are in sys.columns too.
SELECT c.COLUMN_NAME,
       c.DATA_TYPE,
       CASE WHEN c.IS_NULLABLE = 'YES' THEN 1 ELSE 0 END,
       c.CHARACTER_MAXIMUM_LENGTH,
       c.NUMERIC_PRECISION,
       c.NUMERIC_SCALE,
       c.DATETIME_PRECISION,
       CAST(CASE WHEN sc.is_identity = 1 THEN 1 ELSE 0 END AS int),
       CAST(CASE WHEN sc.is_computed = 1 THEN 1 ELSE 0 END AS int),
       c.COLLATION_NAME,
       CASE WHEN sc.is_identity = 1 THEN CAST(IDENT_SEED(%(qualified)s) AS bigint) END,
       CASE WHEN sc.is_identity = 1 THEN CAST(IDENT_INCR(%(qualified)s) AS bigint) END,
       CAST(CASE WHEN sc.is_sparse = 1 THEN 1 ELSE 0 END AS int),
       CAST(CASE WHEN sc.is_column_set = 1 THEN 1 ELSE 0 END AS int),
       (SELECT SCHEMA_NAME(x.schema_id) + '.' + x.name FROM sys.xml_schema_collections x
         WHERE x.xml_collection_id = sc.xml_collection_id AND sc.xml_collection_id <> 0)
FROM INFORMATION_SCHEMA.COLUMNS c
LEFT JOIN sys.columns sc
       ON sc.object_id = OBJECT_ID(QUOTENAME(c.TABLE_SCHEMA) + '.' + QUOTENAME(c.TABLE_NAME))
      AND sc.column_id = COLUMNPROPERTY(sc.object_id, c.COLUMN_NAME, 'ColumnId')
WHERE c.TABLE_SCHEMA = %(schema)s AND c.TABLE_NAME = %(table)s
ORDER BY c.ORDINAL_POSITION;
