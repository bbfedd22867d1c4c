-- Constraints of one table besides its primary key and NOT NULL: name, kind (c check, u unique,
-- x exclusion, f foreign key), the definition as pg_get_constraintdef prints it, whether it is
-- validated, deferrable and initially deferred; for a unique constraint the definition of its
-- index; for a foreign key its columns, the referenced table (schema, name) and columns, the
-- match type and the update and delete actions. Read with an empty search_path, so every name
-- outside pg_catalog comes schema-qualified.
SELECT con.conname,
       con.contype,
       pg_get_constraintdef(con.oid),
       con.convalidated,
       con.condeferrable,
       con.condeferred,
       CASE WHEN con.contype = 'u' THEN pg_get_indexdef(con.conindid) END,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
       rn.nspname,
       rc.relname,
       array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord),
       con.confmatchtype,
       con.confupdtype,
       con.confdeltype
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class rc ON rc.oid = con.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
  AND con.contype IN ('c', 'u', 'x', 'f')
  -- a partition's own, and the CHECK, unique and exclusion constraints it has from its parent
  -- (attaching it to the re-created parent needs them); a foreign key it has from its parent
  -- comes with the parent's
  AND (con.conislocal OR c.relispartition AND con.contype IN ('c', 'u', 'x'))
ORDER BY con.contype, con.conname;
