-- What else one schema holds besides its tables, none of which so_luigi carries yet: views,
-- procedures, functions, triggers, synonyms, sequences, by kind and name (sys.objects: SQL
-- Server's own are left out). A sequence a column's DEFAULT draws from is carried with the
-- table (catalog._sequence), so not listed.
SELECT LOWER(REPLACE(o.type_desc, '_', ' ')), o.name
FROM sys.objects o
WHERE o.schema_id = SCHEMA_ID(%(schema)s) AND o.is_ms_shipped = 0
  AND o.type IN ('V', 'P', 'PC', 'X', 'FN', 'IF', 'TF', 'FS', 'FT', 'AF', 'TR', 'TA', 'SN', 'SO')
  -- Babelfish shows the sequence behind each IDENTITY column (<table>_<column>_seq) as one
  AND NOT (o.type = 'SO' AND EXISTS (SELECT 1 FROM sys.identity_columns ic
                                     WHERE ic.object_id IN (SELECT t.object_id FROM sys.tables t
                                                            WHERE t.schema_id = o.schema_id)
                                       AND LOWER(OBJECT_NAME(ic.object_id) + '_' + ic.name + '_seq') = LOWER(o.name)))
  AND NOT (o.type = 'SO' AND EXISTS (SELECT 1 FROM sys.default_constraints d
                                     WHERE CHARINDEX(o.name, d.definition) > 0))
ORDER BY 1, 2;
