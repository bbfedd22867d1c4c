-- Base tables of every user schema, by schema and name: ordinary tables, partitions among them
-- (a partitioned table holds no rows of its own: it is re-created after its partitions are
-- loaded, see objects.py); an extension's own tables are left to the extension.
SELECT n.nspname, c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND left(n.nspname, 3) <> 'pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname;
