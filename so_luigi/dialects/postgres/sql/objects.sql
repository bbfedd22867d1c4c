-- What else one schema holds besides its tables, none of which so_luigi carries yet: views,
-- materialized views, foreign tables, sequences no column owns, functions, procedures,
-- aggregates, triggers and rules (an extension's own objects are left to the extension), and
-- partitioned tables, whose partitions arrive as tables of their own. (kind, name), by kind and name.
SELECT kind, name FROM (
    SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                          WHEN 'S' THEN 'sequence' WHEN 'p' THEN 'partitioned table' END AS kind,
           c.relname::text AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relkind IN ('v', 'm', 'f', 'S', 'p') AND NOT c.relispartition
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND (d.deptype = 'e' OR c.relkind = 'S' AND d.deptype IN ('a', 'i')
                                              AND d.refclassid = 'pg_class'::regclass))
  UNION ALL
    SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window function'
                          ELSE 'function' END,
           format('%%s(%%s)', p.proname, pg_get_function_identity_arguments(p.oid))
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = %(schema)s
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                      AND d.deptype = 'e')
  UNION ALL
    SELECT 'trigger', format('%%s on %%s', t.tgname, c.relname)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND NOT t.tgisinternal AND t.tgparentid = 0
  UNION ALL
    SELECT 'rule', format('%%s on %%s', r.rulename, c.relname)
    FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND r.rulename <> '_RETURN'
) o
ORDER BY kind, name;
