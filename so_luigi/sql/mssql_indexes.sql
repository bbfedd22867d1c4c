-- Secondary indexes (not the primary key) of one table: only sys.indexes holds them. Joined by
-- object and column ids; filtered indexes and included columns are left out (reported as skipped).
SELECT i.name,
       CAST(i.is_unique AS int),
       col.name,
       CAST(ic.is_descending_key AS int),
       CAST(i.has_filter AS int)
FROM sys.indexes i
JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
JOIN sys.columns col ON col.object_id = ic.object_id AND col.column_id = ic.column_id
WHERE i.object_id = OBJECT_ID(%(qualified)s)
  AND i.is_primary_key = 0 AND i.is_hypothetical = 0 AND i.type IN (1, 2)
  AND ic.is_included_column = 0
ORDER BY i.index_id, ic.key_ordinal;
