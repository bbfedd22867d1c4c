-- What else one schema holds besides its tables, none of which so_luigi carries yet: views,
-- procedures, functions, triggers, synonyms, sequences, by kind and name (sys.objects: SQL
-- Server's own are left out).
SELECT LOWER(REPLACE(o.type_desc, '_', ' ')), o.name
FROM sys.objects o
WHERE o.schema_id = SCHEMA_ID(%(schema)s) AND o.is_ms_shipped = 0
  AND o.type IN ('V', 'P', 'PC', 'X', 'FN', 'IF', 'TF', 'FS', 'FT', 'AF', 'TR', 'TA', 'SN', 'SO')
ORDER BY 1, 2;
