-- Column defaults of one table: column, the default constraint's name and its definition as
-- the catalog prints it.
SELECT c.name, d.name, d.definition
FROM sys.default_constraints d
JOIN sys.columns c ON c.object_id = d.parent_object_id AND c.column_id = d.parent_column_id
WHERE d.parent_object_id = OBJECT_ID(%(qualified)s);
