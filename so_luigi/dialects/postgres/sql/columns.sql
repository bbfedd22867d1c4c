-- Columns of one table in order: name, base type, declared type, nullability, identity
-- (an IDENTITY column, or a serial: its default draws from a sequence the column owns; one
-- drawing from a sequence no column owns is a plain default), whether the type is
-- built in, whether the column is generated, its DEFAULT expression (not an identity's), its
-- collation when not its type's (qualified), the identity kind (a always, d by default), and
-- the sequence it draws from (an identity's, or a serial's: owned by the column) with its
-- options, and last whether the type is one initdb made (no extension's). Read with an empty search_path, so every name outside pg_catalog comes qualified.
SELECT a.attname,
       t.typname,
       format_type(a.atttypid, a.atttypmod),
       NOT a.attnotnull,
       a.attidentity <> '' OR s.oid IS NOT NULL,
       tn.nspname = 'pg_catalog',
       a.attgenerated <> '',
       pg_get_expr(d.adbin, d.adrelid),
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN format('%%I.%%I', cn.nspname, co.collname) END,
       a.attidentity,
       s.relname,
       format_type(sq.seqtypid, NULL), sq.seqstart, sq.seqincrement, sq.seqmin, sq.seqmax, sq.seqcache, sq.seqcycle,
       a.atttypid < 16384
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN LATERAL (
     -- one sequence per column: an identity's own, else the owned one its default draws from
     SELECT sc.oid, sc.relname FROM pg_depend dep JOIN pg_class sc ON sc.oid = dep.objid AND sc.relkind = 'S'
     WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
       AND dep.refobjid = c.oid AND dep.refobjsubid = a.attnum AND dep.deptype IN ('a', 'i')
       AND (dep.deptype = 'i' OR EXISTS (SELECT 1 FROM pg_depend dd WHERE dd.classid = 'pg_attrdef'::regclass
                                         AND dd.objid = d.oid AND dd.refobjid = sc.oid))
     ORDER BY dep.deptype DESC LIMIT 1) s ON true
LEFT JOIN pg_sequence sq ON sq.seqrelid = s.oid
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;
