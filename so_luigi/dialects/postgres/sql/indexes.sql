-- Primary key and secondary indexes of one table (not those of a unique or exclusion
-- constraint, which come with the constraint): name, is primary, is unique, key columns with
-- direction, whether the index is a plain column index (no expression, predicate or INCLUDE),
-- its access method, and its definition after "USING " as pg_get_indexdef prints it (method,
-- operator classes, collations, order, expressions, INCLUDE, predicate). Read with an empty
-- search_path, so every name outside pg_catalog comes schema-qualified.
SELECT ic.relname,
       i.indisprimary,
       i.indisunique,
       array(SELECT a.attname || CASE WHEN (i.indoption[k.ord - 1] & 1) = 1 THEN ' DESC' ELSE ' ASC' END
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= i.indnkeyatts
             ORDER BY k.ord),
       i.indexprs IS NULL AND i.indpred IS NULL AND i.indnkeyatts = i.indnatts
         AND 0 <> ALL (i.indkey::int2[]) AND am.amname = 'btree'
         AND NOT EXISTS (SELECT 1 FROM unnest(i.indoption::int2[]) AS o(v) WHERE (o.v & 2) <> 0)
         AND NOT EXISTS (SELECT 1 FROM unnest(i.indclass::oid[]) AS oc(oid) JOIN pg_opclass op ON op.oid = oc.oid
                         WHERE NOT op.opcdefault)
         AND NOT EXISTS (SELECT 1 FROM unnest(i.indcollation::oid[]) AS co(oid)
                         WHERE co.oid <> 0 AND co.oid <> 100),
       am.amname,
       -- after "ON [ONLY] schema.table USING ": names may hold " USING " themselves
       substr(pg_get_indexdef(i.indexrelid),
              strpos(pg_get_indexdef(i.indexrelid), format(' ON %%s%%I.%%I USING ',
                     CASE WHEN c.relkind = 'p' THEN 'ONLY ' ELSE '' END, n.nspname, c.relname))
              + length(format(' ON %%s%%I.%%I USING ', CASE WHEN c.relkind = 'p' THEN 'ONLY ' ELSE '' END,
                              n.nspname, c.relname)))
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                  AND k.contype IN ('u', 'x'))
ORDER BY i.indisprimary DESC, ic.relname;
