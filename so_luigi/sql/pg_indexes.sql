-- Primary key and secondary indexes of one table: name, is primary, is unique, key columns with
-- direction, and whether the index is a plain column index (no expression, predicate or INCLUDE).
SELECT ic.relname,
       i.indisprimary,
       i.indisunique,
       array(SELECT a.attname || CASE WHEN (i.indoption[k.ord - 1] & 1) = 1 THEN ' DESC' ELSE ' ASC' END
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       i.indexprs IS NULL AND i.indpred IS NULL AND i.indnkeyatts = i.indnatts
         AND 0 <> ALL (i.indkey::int2[])
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
ORDER BY i.indisprimary DESC, ic.relname;
