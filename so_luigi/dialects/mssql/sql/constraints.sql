-- CHECK constraints and foreign keys of one table, one row per foreign-key column: name, kind
-- (C check, F foreign key), the CHECK's definition as the catalog prints it, whether SQL Server
-- trusts it (is_not_trusted: added or enabled WITH NOCHECK) or it is disabled, and for a
-- foreign key its column, the referenced table (schema, name) and column, and the actions.
SELECT cc.name, 'C', cc.definition, CAST(cc.is_not_trusted AS int), CAST(cc.is_disabled AS int),
       NULL, NULL, NULL, NULL, NULL, NULL, 0
FROM sys.check_constraints cc
WHERE cc.parent_object_id = OBJECT_ID(%(qualified)s)
UNION ALL
SELECT fk.name, 'F', NULL, CAST(fk.is_not_trusted AS int), CAST(fk.is_disabled AS int),
       pc.name, OBJECT_SCHEMA_NAME(fk.referenced_object_id), OBJECT_NAME(fk.referenced_object_id), rc.name,
       fk.update_referential_action_desc, fk.delete_referential_action_desc, fkc.constraint_column_id
FROM sys.foreign_keys fk
JOIN sys.foreign_key_columns fkc ON fkc.constraint_object_id = fk.object_id
JOIN sys.columns pc ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id
JOIN sys.columns rc ON rc.object_id = fkc.referenced_object_id AND rc.column_id = fkc.referenced_column_id
WHERE fk.parent_object_id = OBJECT_ID(%(qualified)s)
ORDER BY 2, 1, 12;
