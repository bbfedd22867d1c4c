-- The user-defined types one table's columns need, with every type they need in turn (an array's
-- element, a domain's base, a composite's attributes, a range's subtype), each once, those it
-- depends on first: its kind (e enum, d domain, c composite, r range, x: a type of an extension),
-- qualified name, and what re-creating it takes. Read with an empty search_path, so every name
-- outside pg_catalog comes qualified.
WITH RECURSIVE needed(oid, depth) AS (
    SELECT a.atttypid, 0 FROM pg_attribute a
    WHERE a.attrelid = to_regclass(%(qualified)s) AND a.attnum > 0 AND NOT a.attisdropped
  UNION
    SELECT sub.oid, n.depth + 1
    FROM needed n JOIN pg_type t ON t.oid = n.oid,
    LATERAL (SELECT t.typelem WHERE t.typcategory = 'A' AND t.typelem <> 0
             UNION ALL SELECT t.typbasetype WHERE t.typtype = 'd'
             UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid
             UNION ALL SELECT ca.atttypid FROM pg_attribute ca
                       WHERE ca.attrelid = t.typrelid AND t.typtype = 'c' AND ca.attnum > 0 AND NOT ca.attisdropped
            ) AS sub(oid)
    WHERE n.depth < 20
)
SELECT CASE WHEN e.extname IS NOT NULL THEN 'x' ELSE t.typtype::text END,
       format_type(t.oid, NULL), tn.nspname, t.typname,
       e.extname, en.nspname,
       -- enum: its labels in order
       (SELECT array_agg(l.enumlabel ORDER BY l.enumsortorder) FROM pg_enum l WHERE l.enumtypid = t.oid),
       -- domain: base type, NOT NULL, default, collation, CHECK constraints
       format_type(t.typbasetype, t.typtypmod), t.typnotnull, pg_get_expr(t.typdefaultbin, 0),
       CASE WHEN t.typcollation <> 0 AND t.typcollation <> bt.typcollation
            THEN format('%%I.%%I', cn.nspname, co.collname) END,
       (SELECT array_agg(format('CONSTRAINT %%I %%s', c.conname, pg_get_constraintdef(c.oid)) ORDER BY c.conname)
        FROM pg_constraint c WHERE c.contypid = t.oid),
       -- composite: its attributes
       (SELECT array_agg(format('%%I %%s', ca.attname, format_type(ca.atttypid, ca.atttypmod)) ORDER BY ca.attnum)
        FROM pg_attribute ca WHERE ca.attrelid = t.typrelid AND t.typtype = 'c' AND ca.attnum > 0
          AND NOT ca.attisdropped),
       -- range: subtype, its operator class and collation when not the default, subtype_diff
       format_type(r.rngsubtype, NULL),
       (SELECT format('%%I.%%I', ocn.nspname, oc.opcname) FROM pg_opclass oc
        JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace WHERE oc.oid = r.rngsubopc AND NOT oc.opcdefault),
       (SELECT format('%%I.%%I', rcn.nspname, rc.collname) FROM pg_collation rc
        JOIN pg_namespace rcn ON rcn.oid = rc.collnamespace WHERE rc.oid = r.rngcollation),
       CASE WHEN r.rngsubdiff <> 0 THEN r.rngsubdiff::regproc::text END,
       CASE WHEN r.rngcanonical <> 0 THEN r.rngcanonical::regproc::text END
FROM (SELECT oid, max(depth) AS depth FROM needed GROUP BY oid) n
JOIN pg_type t ON t.oid = n.oid
JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_collation co ON co.oid = t.typcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN pg_range r ON r.rngtypid = t.oid
LEFT JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
LEFT JOIN pg_extension e ON e.oid = d.refobjid
LEFT JOIN pg_namespace en ON en.oid = e.extnamespace
WHERE tn.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (t.typcategory <> 'A' OR t.typtype = 'd')  -- arrays come with their element type; a domain over one is its own
  AND NOT (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class rc WHERE rc.oid = t.typrelid AND rc.relkind <> 'c'))
ORDER BY n.depth DESC, format_type(t.oid, NULL);
