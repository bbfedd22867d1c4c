-- Secondary indexes (not the primary key) of one table: only sys.indexes holds them. Joined by
-- object and column ids: name, unique, column, descending, whether the column is an INCLUDE
-- column, the filter's predicate (a filtered index), and whether it backs a UNIQUE constraint.
SELECT i.name,
       CAST(i.is_unique AS int),
       col.name,
       CAST(ic.is_descending_key AS int),
       CAST(ic.is_included_column AS int),
       CASE WHEN i.has_filter = 1 THEN i.filter_definition END,
       CAST(i.is_unique_constraint AS int)
FROM sys.indexes i
JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
JOIN sys.columns col ON col.object_id = ic.object_id AND col.column_id = ic.column_id
WHERE i.object_id = OBJECT_ID(%(qualified)s)
  AND i.is_primary_key = 0 AND i.is_hypothetical = 0 AND i.type IN (1, 2)
ORDER BY i.index_id, ic.is_included_column, ic.key_ordinal, ic.index_column_id;
