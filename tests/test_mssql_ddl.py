"""SQL Server as destination, without a server: every source type maps to the T-SQL type it should
or is refused by name, and the DDL, finishing, checksum and clearing statements are T-SQL that
sqlglot parses into what was meant, with names quoted right."""
import pytest
import sqlglot
from sqlglot import exp

from so_luigi.dialects.postgres import types as pg_types
from so_luigi.dialects.postgres.forms import pg_form
from so_luigi.testing import sample
from so_luigi.dialects.mssql import bulk as ms_bulk, checksum as ms_checksum, ddl as ms_ddl, types as ms_types
from so_luigi.dialects.base import Column, Index, Table
from so_luigi.errors import SchemaError
from test_mssql_unit import tsql

# (DATA_TYPE, length, precision, scale, expected) as mssql.describe reads them
MSSQL_COLUMNS = [
    ("bit", None, None, None, "bit"),
    ("tinyint", None, 3, 0, "tinyint"),
    ("smallint", None, 5, 0, "smallint"),
    ("int", None, 10, 0, "int"),
    ("bigint", None, 19, 0, "bigint"),
    ("decimal", None, 18, 4, "decimal(18,4)"),
    ("numeric", None, 38, 0, "numeric(38,0)"),
    ("money", None, 19, 4, "money"),
    ("smallmoney", None, 10, 4, "smallmoney"),
    ("float", None, 53, None, "float"),
    ("real", None, 24, None, "real"),
    ("date", None, None, None, "date"),
    ("datetime", None, None, None, "datetime"),
    ("smalldatetime", None, None, None, "smalldatetime"),
    ("datetime2", None, 7, None, "datetime2(7)"),
    ("datetime2", None, 0, None, "datetime2(0)"),
    ("datetimeoffset", None, 3, None, "datetimeoffset(3)"),
    ("time", None, 7, None, "time(7)"),
    ("time", None, None, None, "time(7)"),
    ("char", 10, None, None, "char(10)"),
    ("nchar", 10, None, None, "nchar(10)"),
    ("varchar", 50, None, None, "varchar(50)"),
    ("varchar", -1, None, None, "varchar(max)"),
    ("nvarchar", 4000, None, None, "nvarchar(4000)"),
    ("nvarchar", -1, None, None, "nvarchar(max)"),
    ("binary", 16, None, None, "binary(16)"),
    ("varbinary", 8000, None, None, "varbinary(8000)"),
    ("varbinary", -1, None, None, "varbinary(max)"),
    ("uniqueidentifier", None, None, None, "uniqueidentifier"),
    ("xml", -1, None, None, "xml"),
    ("text", 2147483647, None, None, "varchar(max)"),
    ("ntext", 1073741823, None, None, "nvarchar(max)"),
    ("image", 2147483647, None, None, "varbinary(max)"),
    ("timestamp", None, None, None, "binary(8)"),
    ("rowversion", None, None, None, "binary(8)"),
]

# (typname, format_type) as postgres.describe reads them, and the expected T-SQL type
POSTGRES_COLUMNS = [
    ("int2", "smallint", "smallint"),
    ("int4", "integer", "int"),
    ("int8", "bigint", "bigint"),
    ("bool", "boolean", "bit"),
    ("float4", "real", "real"),
    ("float8", "double precision", "float"),
    ("numeric", "numeric(10,2)", "decimal(10,2)"),
    ("numeric", "numeric(38,0)", "decimal(38,0)"),
    ("numeric", "numeric(5)", "decimal(5,0)"),
    ("money", "money", "money"),
    ("text", "text", "nvarchar(max)"),
    ("varchar", "character varying(40)", "nvarchar(40)"),
    ("varchar", "character varying(4000)", "nvarchar(4000)"),
    ("varchar", "character varying(4001)", "nvarchar(max)"),
    ("varchar", "character varying", "nvarchar(max)"),
    ("bpchar", "character(10)", "nchar(10)"),
    ("bpchar", "character(4000)", "nchar(4000)"),
    ("bpchar", "bpchar", "nvarchar(max)"),
    ("bytea", "bytea", "varbinary(max)"),
    ("uuid", "uuid", "uniqueidentifier"),
    ("date", "date", "date"),
    ("timestamp", "timestamp without time zone", "datetime2(6)"),
    ("timestamp", "timestamp(3) without time zone", "datetime2(3)"),
    ("timestamp", "timestamp(0) without time zone", "datetime2(0)"),
    ("timestamptz", "timestamp with time zone", "datetimeoffset(6)"),
    ("timestamptz", "timestamp(2) with time zone", "datetimeoffset(2)"),
    ("time", "time without time zone", "time(6)"),
    ("time", "time(4) without time zone", "time(4)"),
    ("json", "json", "nvarchar(max)"),
    ("jsonb", "jsonb", "nvarchar(max)"),
]

MSSQL_REFUSED = ["my_clr_type", "vector"]

# (typname, format_type, words the reason must hold)
POSTGRES_REFUSED = [
    ("numeric", "numeric", "no precision"),
    ("numeric", "numeric(39,2)", "more than 38 digits"),
    ("numeric", "numeric(5,-2)", "scale outside"),
    ("bpchar", "character(4001)", "at most 4000"),
    ("mood", "mood", "no SQL Server type"),          # a type the table's catalog reading did not describe
    ("regclass", "regclass", "no SQL Server type"),
]


def _mssql_col(data_type, length=None, precision=None, scale=None, name="c", **kw):
    return Column(name=name, data_type=data_type, length=length, precision=precision, scale=scale,
                  source_type=data_type, **kw)


def _pg_col(typname, declared, name="c", **kw):
    return Column(name=name, data_type=typname, source_type=declared, **kw)


def _table(columns, name="T", schema="src", dialect="mssql", **kw):
    return Table(schema=schema, name=name, columns=columns, dialect=dialect, **kw)


def _one_line_error(fn, *args):
    with pytest.raises(SchemaError) as info:
        fn(*args)
    text = str(info.value)
    assert "\n" not in text and "--tables" in text
    return text


def _unquoted(literal):
    """The text inside an N'...' or '...' literal."""
    literal = literal.removeprefix("N")
    assert literal.startswith("'") and literal.endswith("'")
    return literal[1:-1].replace("''", "'")


# --- type mapping ------------------------------------------------------------------------------

@pytest.mark.parametrize("data_type,length,precision,scale,expected", MSSQL_COLUMNS)
def test_sql_server_types_are_kept_as_declared(data_type, length, precision, scale, expected):
    assert ms_types.column_type(_mssql_col(data_type, length, precision, scale), "mssql") == expected


@pytest.mark.parametrize("typname,declared,expected", POSTGRES_COLUMNS)
def test_postgres_types_map_to_tsql(typname, declared, expected):
    assert ms_types.column_type(_pg_col(typname, declared), "postgres") == expected


def test_postgres_sql_spelling_of_a_type_maps_like_its_typname():
    assert ms_types.column_type(_pg_col("character varying", "character varying(40)"), "postgres") == "nvarchar(40)"
    assert ms_types.column_type(_pg_col("integer", "integer"), "postgres") == "int"


@pytest.mark.parametrize("data_type", MSSQL_REFUSED)
def test_sql_server_types_without_destination_are_refused_by_name(data_type):
    table = _table([_mssql_col(data_type, name="Shape")], name="Places", schema="geo")
    text = _one_line_error(ms_types.column_type, table.columns[0], "mssql", table)
    assert f"geo.Places.Shape ({data_type})" in text


def test_postgres_types_sql_server_lacks_travel_as_their_text_or_json():
    types = [{"kind": "e", "name": "public.mood", "typname": "mood", "labels": ["sad", "ok", "rather happy"]},
             {"kind": "d", "name": "public.pos", "typname": "pos", "base": "numeric(10,2)",
              "checks": ["CONSTRAINT pos_check CHECK ((VALUE > (0)::numeric))"]},
             {"kind": "d", "name": "public.tags", "typname": "tags", "base": "text[]"},
             {"kind": "r", "name": "public.span", "typname": "span"},
             {"kind": "x", "name": "public.citext", "typname": "citext"}]
    cols = [_pg_col("mood", "public.mood", name="m", user_type=True),
            _pg_col("pos", "public.pos", name="p", user_type=True),
            _pg_col("tags", "public.tags", name="t", user_type=True),
            _pg_col("span", "public.span", name="s", user_type=True),
            _pg_col("citext", "public.citext", name="ci", user_type=True),
            _pg_col("_int4", "integer[]", name="a"), _pg_col("inet", "inet", name="ip"),
            _pg_col("interval", "interval", name="iv"), _pg_col("tsrange", "tsrange", name="r"),
            _pg_col("timetz", "time with time zone", name="tz"), _pg_col("tsvector", "tsvector", name="tv")]
    table = _table(cols, dialect="postgres", types=types)
    got = {c.name: ms_types.column_type(c, "postgres", table) for c in cols}
    assert got == {"m": "nvarchar(12)", "p": "decimal(10,2)", "t": "nvarchar(max)", "s": "nvarchar(max)",
                   "ci": "nvarchar(max)", "a": "nvarchar(max)", "ip": "nvarchar(43)", "iv": "nvarchar(100)",
                   "r": "nvarchar(max)", "tz": "nvarchar(30)", "tv": "nvarchar(max)"}
    assert [pg_form(c, table)[0] for c in cols[:3]] == ["enum", None, "json"]


@pytest.mark.parametrize("typname,declared,reason", POSTGRES_REFUSED)
def test_postgres_types_without_destination_are_refused_with_the_reason(typname, declared, reason):
    table = _table([_pg_col(typname, declared, name="v")], name="m", schema="public", dialect="postgres")
    text = _one_line_error(ms_types.column_type, table.columns[0], "postgres", table)
    assert f"public.m.v ({declared})" in text and reason in text


def test_identity_on_a_type_sql_server_cannot_number_is_refused():
    col = _pg_col("text", "text", name="code", identity=True)
    text = _one_line_error(ms_types.column_type, col, "postgres")
    assert "code (text)" in text and "identity" in text


def test_unknown_source_dialect_names_the_known_ones():
    with pytest.raises(ValueError, match="known: mssql, postgres"):
        ms_types.column_type(_mssql_col("int"), "oracle")


# --- checks before any data moves ------------------------------------------------------------

def test_check_mappable_names_every_problem_of_every_table_in_one_line():
    places = _table([_mssql_col("int", name="Id"), _mssql_col("my_clr_type", name="Where"),
                     _mssql_col("vector", name="Extra")], name="Places")
    tags = _table([_mssql_col("my_other_clr_type", name="Node")], name="Tree")
    text = _one_line_error(ms_types.check_mappable, [places, tags], "mssql")
    for part in ("src.Places.Where (my_clr_type)", "src.Places.Extra (vector)", "src.Tree.Node (my_other_clr_type)"):
        assert part in text
    assert "Places.Id" not in text


def test_check_mappable_passes_the_stackoverflow_tables():
    tables = [sample.table_def(n) for n in sample.table_names(post_history=True)]
    assert ms_types.check_mappable(tables, "mssql") is None


def test_check_mappable_refuses_keys_on_max_types_before_the_load():
    table = _table([_pg_col("text", "text", name="email", nullable=False), _pg_col("bytea", "bytea", name="blob")],
                   name="users", schema="public", dialect="postgres", primary_key=["email"], pk_name="users_pkey",
                   indexes=[Index(name="users_blob", columns=[["blob", "ASC"]])])
    text = _one_line_error(ms_types.check_mappable, [table], "postgres")
    assert "public.users.email is in a key or index" in text and "nvarchar(max)" in text
    assert "public.users.blob is in a key or index" in text and "varbinary(max)" in text


def test_check_mappable_refuses_two_identity_columns():
    table = _table([_pg_col("int4", "integer", name="a", identity=True),
                    _pg_col("int8", "bigint", name="b", identity=True)], dialect="postgres")
    text = _one_line_error(ms_types.check_mappable, [table], "postgres")
    assert "src.T has 2 identity columns (a, b)" in text


def test_check_mappable_refuses_names_over_128_characters():
    long_col = "c" * 129
    table = _table([_mssql_col("int", name="Id"), _mssql_col("int", name=long_col)])
    text = _one_line_error(ms_types.check_mappable, [table], "mssql")
    assert long_col in text and "128" in text


# --- CREATE / DROP ---------------------------------------------------------------------------

STACKOVERFLOW = sample.table_names()


def test_the_nine_stackoverflow_tables_are_the_ones_of_the_reference():
    assert sorted(STACKOVERFLOW) == sorted(["Badges", "Comments", "LinkTypes", "PostLinks", "Posts",
                                            "PostTypes", "Users", "Votes", "VoteTypes"])


@pytest.mark.parametrize("name", STACKOVERFLOW)
def test_stackoverflow_ddl_parses_as_tsql_with_every_column(name):
    table = sample.table_def(name)
    created = tsql(ms_ddl.create_table_sql("so", table, "mssql"))
    assert isinstance(created, exp.Create)
    target = created.this.this
    assert (target.db, target.name) == ("so", name)
    defs = created.this.expressions
    assert [d.name for d in defs] == [c.name for c in table.columns]
    for d, col in zip(defs, table.columns):
        not_null = any(isinstance(k.kind, exp.NotNullColumnConstraint) and not k.kind.args.get("allow_null")
                       for k in d.constraints)
        assert not_null == (not col.nullable), col.name
        identity = [k.kind for k in d.constraints if isinstance(k.kind, exp.GeneratedAsIdentityColumnConstraint)]
        assert bool(identity) == col.identity, col.name
    # every declared type kept exactly (the reference's nvarchar(max), varchar(50), datetime, ...)
    assert [ms_types.column_type(c, "mssql") for c in table.columns] == [c.source_type for c in table.columns]


def test_users_ddl_is_exact():
    assert ms_ddl.create_table_sql("dbo", sample.table_def("Users"), "mssql") == (
        "CREATE TABLE [dbo].[Users] (\n"
        "    [Id] int IDENTITY(1,1) NOT NULL,\n    [AboutMe] nvarchar(max) NULL,\n    [Age] int NULL,\n"
        "    [CreationDate] datetime NOT NULL,\n    [DisplayName] nvarchar(40) NOT NULL,\n"
        "    [DownVotes] int NOT NULL,\n    [EmailHash] nvarchar(40) NULL,\n    [LastAccessDate] datetime NOT NULL,\n"
        "    [Location] nvarchar(100) NULL,\n    [Reputation] int NOT NULL,\n    [UpVotes] int NOT NULL,\n"
        "    [Views] int NOT NULL,\n    [WebsiteUrl] nvarchar(200) NULL,\n    [AccountId] int NULL\n)")


def _as_postgres_describes(table):
    """The SQL Server table as postgres.describe sees it once so_luigi has copied it to PostgreSQL."""
    mapped = sample.table_def(table.name)
    pg_types.map_table(mapped, "mssql")
    cols = [Column(name=c.name, data_type=pg_types.base_type(c.pg_type), nullable=c.nullable, identity=c.identity,
                   source_type=c.pg_type) for c in mapped.columns]
    return Table(schema="public", name=table.name, columns=cols, primary_key=list(table.primary_key),
                 pk_name=f"{table.name}_pkey", dialect="postgres")


@pytest.mark.parametrize("name", STACKOVERFLOW)
def test_stackoverflow_via_postgres_comes_back_with_sql_server_types(name):
    back = {"int": "int", "datetime": "datetime2(3)", "varchar(50)": "nvarchar(50)",
            "uniqueidentifier": "uniqueidentifier"}
    source = sample.table_def(name)
    table = _as_postgres_describes(source)
    ms_types.check_mappable([table], "postgres")
    got = [ms_types.column_type(c, "postgres") for c in table.columns]
    assert got == [back.get(c.source_type, c.source_type) for c in source.columns]
    tsql(ms_ddl.create_table_sql("dbo", table, "postgres"))


def test_brackets_and_spaces_in_names_are_quoted():
    table = _table([_mssql_col("int", name="Id", nullable=False, identity=True),
                    _mssql_col("nvarchar", -1, name="we]ird col")], name="Post ]History")
    text = ms_ddl.create_table_sql("my schema", table, "mssql")
    assert text.startswith("CREATE TABLE [my schema].[Post ]]History] (")
    assert "[we]]ird col] nvarchar(max) NULL" in text and "[Id] int IDENTITY(1,1) NOT NULL" in text
    created = tsql(text)
    assert (created.this.this.db, created.this.this.name) == ("my schema", "Post ]History")
    assert [d.name for d in created.this.expressions] == ["Id", "we]ird col"]


def test_drop_table_quotes_names():
    dropped = tsql(ms_ddl.drop_table_sql("my schema", "a]b"))
    assert ms_ddl.drop_table_sql("my schema", "a]b") == "DROP TABLE [my schema].[a]]b]"
    target = dropped.find(exp.Table)
    assert isinstance(dropped, exp.Drop) and (target.db, target.name) == ("my schema", "a]b")


def test_create_schema_runs_create_schema_through_exec_with_both_quotings():
    text = ms_ddl.create_schema_sql("o'b]x y")
    assert text == "IF SCHEMA_ID(N'o''b]x y') IS NULL EXEC(N'CREATE SCHEMA [o''b]]x y]')"
    inner = _unquoted(text[text.index("EXEC(") + 5:-1])
    created = tsql(inner)
    assert isinstance(created, exp.Create) and created.args["kind"] == "SCHEMA" and created.this.db == "o'b]x y"


def test_a_name_of_129_characters_is_refused_and_128_accepted():
    assert "[" + "t" * 128 + "]" in ms_ddl.create_table_sql("dbo", _table([_mssql_col("int")], name="t" * 128), "mssql")
    with pytest.raises(SchemaError, match="at most 128 characters"):
        ms_ddl.create_table_sql("dbo", _table([_mssql_col("int")], name="t" * 129), "mssql")
    with pytest.raises(SchemaError, match="at most 128 characters"):
        ms_ddl.create_schema_sql("s" * 129)


def test_name_length_counts_utf16_units_as_sql_server_does():
    ms_ddl.create_table_sql("dbo", _table([_mssql_col("int", name="😀" * 64)]), "mssql")
    with pytest.raises(SchemaError, match="at most 128 characters"):
        ms_ddl.create_table_sql("dbo", _table([_mssql_col("int", name="😀" * 65)]), "mssql")


# --- finishing -------------------------------------------------------------------------------

def test_finish_builds_the_key_and_reseeds_identity_with_a_literal():
    statements = ms_ddl.finish_table_sql("so", sample.table_def("Users"))
    assert statements == ["ALTER TABLE [so].[Users] ADD CONSTRAINT [PK_Users_Id] PRIMARY KEY CLUSTERED ([Id])"]
    alter = tsql(statements[0])
    assert isinstance(alter, exp.Alter) and alter.this.name == "Users"
    assert ms_ddl.identity_sql("so", sample.table_def("Users"), "Id") == \
        "SELECT MAX([Id]), IDENT_CURRENT(N'[so].[Users]') FROM [so].[Users]"
    assert ms_ddl.reseed_sql("so", sample.table_def("Users"), 40) == \
        "DBCC CHECKIDENT ('[so].[Users]', RESEED, 40) WITH NO_INFOMSGS"


@pytest.mark.parametrize("name", STACKOVERFLOW)
def test_every_finishing_statement_parses(name):
    for statement in ms_ddl.finish_table_sql("dbo", sample.table_def(name)):
        assert tsql(statement) is not None


def test_reseed_names_the_table_in_a_literal_sql_server_can_resolve():
    table = _table([_mssql_col("bigint", name="row id", nullable=False, identity=True)], name="it's]odd",
                   primary_key=["row id"])
    assert tsql(ms_ddl.identity_sql("my s", table, "row id")).find(exp.Max).this.name == "row id"
    check = ms_ddl.reseed_sql("my s", table, 9007199254740993)
    literal = check[check.index("(") + 1:check.index(", RESEED")]
    target = tsql("SELECT 1 FROM " + _unquoted(literal)).find(exp.Table)
    assert (target.db, target.name) == ("my s", "it's]odd")
    assert check.endswith("RESEED, 9007199254740993) WITH NO_INFOMSGS") and "(N'" not in check
    assert "(N'[dbo].[日本]'" in ms_ddl.reseed_sql("dbo", _table([], name="日本"), 1)     # beyond ASCII: Unicode


def test_no_identity_no_reseed_and_default_key_name():
    table = _table([_mssql_col("int", name="B", nullable=False), _mssql_col("int", name="A", nullable=False)],
                   primary_key=["B", "A"])
    assert ms_ddl.finish_table_sql("dbo", table) == [
        "ALTER TABLE [dbo].[T] ADD CONSTRAINT [PK_T] PRIMARY KEY CLUSTERED ([B], [A])",
    ]


def test_indexes_keep_direction_and_uniqueness():
    table = _table([_mssql_col("int", name="Id", nullable=False), _mssql_col("int", name="a"),
                    _mssql_col("nvarchar", 40, name="b c")], primary_key=["Id"], pk_name="PK_T__Id",
                   indexes=[Index(name="IX_a", columns=[["a", "ASC"], ["b c", "DESC"]]),
                            Index(name="UX b", columns=[["b c", "ASC"]], unique=True)])
    statements = ms_ddl.finish_table_sql("dbo", table)
    assert statements[1:3] == [
        "CREATE NONCLUSTERED INDEX [IX_a] ON [dbo].[T] ([a] ASC, [b c] DESC)",
        "CREATE UNIQUE NONCLUSTERED INDEX [UX b] ON [dbo].[T] ([b c] ASC)",   # SQL Server's own NULL rule
    ]
    created = tsql(statements[1])
    ordered = created.find_all(exp.Ordered)
    assert [(o.this.name, bool(o.args.get("desc"))) for o in ordered] == [("a", False), ("b c", True)]
    assert tsql(statements[2]).args.get("unique") is True


def test_unique_index_from_postgres_keeps_postgres_null_rule():
    table = _table([_pg_col("int4", "integer", name="id", nullable=False), _pg_col("int4", "integer", name="x"),
                    _pg_col("int4", "integer", name="y", nullable=False)],
                   dialect="postgres", primary_key=["id"], pk_name="t_pkey",
                   indexes=[Index(name="t_x_y_key", columns=[["x", "ASC"], ["y", "ASC"]], unique=True)])
    statement = ms_ddl.finish_table_sql("dbo", table)[1]
    assert statement == ("CREATE UNIQUE NONCLUSTERED INDEX [t_x_y_key] ON [dbo].[T] ([x] ASC, [y] ASC) "
                         "WHERE [x] IS NOT NULL")
    assert tsql(statement).find(exp.Where) is not None


def test_finish_refuses_an_index_name_over_128_characters():
    table = _table([_mssql_col("int", name="a")], indexes=[Index(name="i" * 129, columns=[["a", "ASC"]])])
    with pytest.raises(SchemaError, match="at most 128 characters"):
        ms_ddl.finish_table_sql("dbo", table)


# --- ownership mark --------------------------------------------------------------------------

def test_owner_mark_and_query_pass_every_value_as_parameter():
    sql, params = ms_ddl.owner_mark_sql("my s", "it's", "so_luigi run r1")
    assert params == ("so_luigi run r1", "my s", "it's") and sql.count("%s") == 3
    executed = tsql(sql)
    assert isinstance(executed, exp.Execute) and "sp_addextendedproperty" in executed.sql("tsql")
    assert "@name = N'so_luigi'" in sql and "@level1type = N'TABLE'" in sql
    sql, params = ms_ddl.owner_query_sql("my s", "it's")
    assert params == ("my s", "it's") and sql.count("%s") == 2
    selected = tsql(sql)
    assert isinstance(selected, exp.Select) and "fn_listextendedproperty" in sql


# --- checksum and clearing -------------------------------------------------------------------

def json_checksum(schema, table):
    """The whole table's JSON checksum, as both SQL Servers compute it."""
    return ms_checksum.method_checksum_sql("json", schema, table, None)[0]


@pytest.mark.parametrize("name", STACKOVERFLOW)
def test_checksum_hashes_every_column_in_order(name):
    table = sample.table_def(name)
    parsed = tsql(json_checksum("dbo", table))
    assert isinstance(parsed, exp.Select)
    row = parsed.find(exp.Subquery).this.find(exp.Subquery).this     # the FOR JSON row
    assert [a.alias for a in row.expressions] == [str(i) for i in range(1, len(table.columns) + 1)]
    assert [(a.this.table, a.this.name) for a in row.expressions] == [("t", c.name) for c in table.columns]
    assert "0x01" not in json_checksum("dbo", table)        # StackOverflow has no binary column


def test_checksum_is_null_safe_and_cannot_overflow():
    text = json_checksum("my s", _table([_mssql_col("int", name="a]b"), _mssql_col("nvarchar", -1, name="x.y")]))
    assert text == (
        "SELECT COUNT_BIG(*), ISNULL(SUM(h), 0) FROM (SELECT CAST(CAST(SUBSTRING(HASHBYTES('SHA2_256', "
        "CAST((SELECT t.[a]]b] AS [1], t.[x.y] AS [2] FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES) "
        "AS varbinary(max))), 1, 8) AS BIGINT) AS DECIMAL(38,0)) AS h FROM [my s].[T] AS t) AS r")
    parsed = tsql(text)
    assert parsed.find(exp.Table).name == "T" and parsed.find(exp.Table).db == "my s"


def test_checksum_appends_binary_columns_with_their_length_outside_the_json():
    text = json_checksum("dbo", _table([_mssql_col("money", name="m"), _mssql_col("varbinary", 10, name="b")]))
    assert "t.[b] AS [2]" not in text and "CAST(t.[m] AS decimal(19,4)) AS [1] FOR JSON" in text
    assert ("+ ISNULL(0x01 + CAST(CAST(DATALENGTH(CAST(t.[b] AS varbinary(max))) AS bigint) AS binary(8)) "
            "+ CAST(t.[b] AS varbinary(max)), 0x00)") in text
    tsql(text)


@pytest.mark.parametrize("lo,hi,where,params", [
    (100, 200, " WHERE [Id] > %s AND [Id] <= %s", (100, 200)),
    (None, 200, " WHERE [Id] <= %s", (200,)),
    (100, None, " WHERE [Id] > %s", (100,)),
    (None, None, "", None),
])
def test_clear_range_deletes_the_partitions_keys(lo, hi, where, params):
    sql, got = ms_ddl.clear_range_sql("dbo", sample.table_def("Votes"), lo, hi)
    assert (sql, got) == ("DELETE FROM [dbo].[Votes] WITH (TABLOCKX)" + where, params)
    assert isinstance(tsql(sql.replace(" WITH (TABLOCKX)", "")), exp.Delete)   # sqlglot knows no DELETE hints


def test_clear_range_without_integer_key_clears_the_table():
    table = _table([_mssql_col("nvarchar", 10, name="code", nullable=False)], name="a]b", primary_key=["code"])
    sql, params = ms_ddl.clear_range_sql("my s", table, 1, 2)
    assert (sql, params) == ("DELETE FROM [my s].[a]]b] WITH (TABLOCKX)", None)
    assert tsql(sql.replace(" WITH (TABLOCKX)", "")).this.name == "a]b"


def test_tsql_helper_rejects_what_is_not_tsql():
    """The parse checks above can fail: sqlglot refuses broken T-SQL."""
    with pytest.raises(sqlglot.errors.ParseError):
        tsql("CREATE TABLE [dbo].[T] ([a] int NOT NULL,")


@pytest.mark.parametrize("final,side", [
    ("date", "varchar(40)"), ("datetime2(7)", "varchar(40)"), ("datetimeoffset(3)", "varchar(40)"),
    # text of any kind unbounded: a value ending in blanks travels there with a mark appended
    ("varchar(50)", "nvarchar(max)"), ("char(5)", "nvarchar(max)"), ("varchar(max)", "nvarchar(max)"),
    ("varchar(8000)", "nvarchar(max)"), ("char(5000)", "nvarchar(max)"), ("smallmoney", "varchar(40)"),
    ("datetime", "datetime"), ("smalldatetime", "smalldatetime"), ("time(7)", "varchar(40)"),
    ("xml", "nvarchar(max)"),
    ("nvarchar(40)", "nvarchar(max)"), ("nchar(3)", "nvarchar(max)"), ("decimal(9,2)", "decimal(9,2)"), ("int", "int"),
])
def test_side_table_columns_hold_what_the_server_converts(final, side):
    assert ms_bulk.load_type(final) == side


def test_tables_are_created_with_their_real_types():
    table = _table([_mssql_col("int", name="Id", nullable=False, identity=True),
                    _mssql_col("datetime2", name="d'2", precision=7),
                    _mssql_col("varchar", 20, name="v", nullable=False),
                    _mssql_col("datetime", name="plain")])
    created = ms_ddl.create_table_sql("dbo", table, "mssql")
    assert "[d'2] datetime2(7) NULL" in created and "[v] varchar(20) NOT NULL" in created
    assert "[plain] datetime NULL" in created
    tsql(created)


def test_a_sql_server_sources_collations_are_kept_on_text_columns():
    table = _table([_mssql_col("int", name="Id", nullable=False),
                    _mssql_col("varchar", 20, name="code", nullable=False, collation="Latin1_General_CS_AS"),
                    _mssql_col("nvarchar", -1, name="body", collation="SQL_Latin1_General_CP1_CI_AS"),
                    _mssql_col("int", name="n", collation="")])
    created = ms_ddl.create_table_sql("dbo", table, "mssql")
    assert "[code] varchar(20) COLLATE Latin1_General_CS_AS NOT NULL" in created
    assert "[body] nvarchar(max) COLLATE SQL_Latin1_General_CP1_CI_AS NULL" in created
    assert "[n] int NULL" in created
    tsql(created)
    table.columns[1].collation = "x; DROP TABLE t"
    _one_line_error(ms_ddl.create_table_sql, "dbo", table, "mssql")


def test_side_table_text_is_cast_except_code_page_text():
    columns = [(f, ms_bulk.load_type(f), None) for f in ("int", "date", "varchar(20)", "char(5)", "nvarchar(10)",
                                                     "datetimeoffset(7)", "xml", "smallmoney")]
    assert ms_bulk.side_casts(columns) == [None, "date", None, None, None, "datetimeoffset(7)", "xml", "smallmoney"]


def test_row_hash_takes_columns_as_sql_server_holds_them():
    """A PostgreSQL ``timestamp`` is a date and time (SQL Server's datetime2): hashed in the row's
    JSON like any value; SQL Server's own ``timestamp`` (a rowversion) and binary columns by their bytes."""
    from_pg = ms_checksum.row_hash_sql(_table([_pg_col("int4", "integer", name="Id"),
                                       _pg_col("timestamp", "timestamp without time zone", name="At"),
                                       _pg_col("bytea", "bytea", name="Blob")], dialect="postgres"))
    assert "CAST(t.[At] AS varbinary" not in from_pg and "t.[At] AS [2]" in from_pg
    assert "CAST(t.[Blob] AS varbinary(max))" in from_pg
    from_mssql = ms_checksum.row_hash_sql(_table([_mssql_col("int", name="Id"), _mssql_col("timestamp", name="Rv")]))
    assert "CAST(t.[Rv] AS varbinary(max))" in from_mssql
    assert tsql(f"SELECT {from_pg} FROM x AS t") is not None


def _drawing(last=1040, step=10):
    seq = {"name": "Ticket", "schema": "Sales", "target_schema": "sales", "type": "decimal(38,0)", "start": 1000,
           "increment": step, "min": -10**37, "max": 10**37, "cache": 1, "cycle": False, "last": last, "standalone": True}
    return Table(schema="Sales", name="Bug", dialect="mssql", columns=[
        Column("Id", "int", nullable=False, default="(NEXT VALUE FOR [Sales].[Ticket])", sequence=seq)])


def test_a_sql_server_sequence_becomes_a_postgres_one_within_bigint_that_continues_past_the_copy():
    from so_luigi.dialects.postgres import ddl as pg_ddl
    table = _drawing()
    made = pg_ddl.create_table_statements("public", table)
    assert made[:2] == ['CREATE SCHEMA IF NOT EXISTS "sales"',
                        'CREATE SEQUENCE IF NOT EXISTS "sales"."Ticket" AS bigint START WITH 1000 INCREMENT BY 10 '
                        'MINVALUE -9223372036854775808 MAXVALUE 9223372036854775807 CACHE 1 NO CYCLE']
    moved = pg_ddl.sequence_sql("public", table)
    assert moved == ['SELECT setval(\'"sales"."Ticket"\', v, true) FROM (SELECT greatest(1040, (SELECT max("Id") '
                     'FROM "public"."Bug"), (SELECT CASE WHEN is_called THEN last_value END FROM "sales"."Ticket")) '
                     'AS v) AS s WHERE v BETWEEN -9223372036854775808 AND 9223372036854775807']
    assert "least(NULL, (SELECT min(" in pg_ddl.sequence_sql("public", _drawing(last=None, step=-1))[0]


def test_a_sql_server_sequence_is_made_again_in_sql_server_before_the_table_whose_default_names_it():
    sql = ms_ddl.create_sequence_sql(_drawing().columns[0].sequence, "sales")
    assert sql == ("IF OBJECT_ID(N'[sales].[Ticket]', 'SO') IS NULL CREATE SEQUENCE [sales].[Ticket] AS decimal(38,0) "
                   f"START WITH 1000 INCREMENT BY 10 MINVALUE {-10**37} MAXVALUE {10**37} NO CYCLE")
    tsql(sql)
