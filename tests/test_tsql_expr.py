"""T-SQL expressions as SQL Server's catalog prints them, in PostgreSQL's words, or refused with
the reason (the object is then listed as not carried)."""
import pytest

from so_luigi.dialects.mssql import tsql as ms_tsql
from so_luigi.dialects.base import Column, Table

T = Table(schema="dbo", name="T", columns=[Column("Score", "int"), Column("Name", "nvarchar"),
                                           Column("Active", "bit"), Column("Created", "datetime")])


@pytest.mark.parametrize("tsql,pg", [
    ("([Score]>=(0))", '("Score" >= (0))'),
    ("([score]<>(1) AND [Name] IS NOT NULL)", '("Score" <> (1) AND "Name" IS NOT NULL)'),
    ("([Name] like N'a%')", '("Name" LIKE \'a%\')'),
    ("([Score] IN ((1), (2), (3)))", '("Score" IN ((1), (2), (3)))'),
    ("([Score] between (1) and (10))", '("Score" BETWEEN (1) AND (10))'),
    ("(len([Name])>(2))", '(length(rtrim("Name")) > (2))'),
    ("([Active]=(1))", '("Active" = true)'),
    ("(isnull([Score],(0))>(5))", '(coalesce("Score", (0)) > (5))'),
    ("([Created]<getdate())", '("Created" < LOCALTIMESTAMP)'),
    ("([Name]<>N'it''s')", '("Name" <> \'it\'\'s\')'),
    # as Babelfish prints them: names bare and lower-case, resolved as SQL Server compares names
    ("((score >= 0))", '(("Score" >= 0))'),
    ("(((len(name) > 2) OR (name IS NULL)))", '(((length(rtrim("Name")) > 2) OR ("Name" IS NULL)))'),
])
def test_translated(tsql, pg):
    assert ms_tsql.translate(tsql, T, ["Active"]) == pg


def test_literals_are_kept_to_the_byte():
    assert ms_tsql.translate("([Name]<>'a ( b , c )')", T) == "(\"Name\" <> 'a ( b , c )')"


def test_text_compared_under_a_case_insensitive_collation_is_refused():
    ci = Table(schema="dbo", name="U", columns=[Column("Code", "nvarchar", collation="SQL_Latin1_General_CP1_CI_AS")])
    with pytest.raises(ms_tsql.Untranslatable, match="case-insensitive collation"):
        ms_tsql.translate("([Code] IN (N'A', N'B'))", ci)
    assert ms_tsql.translate("([Code] IS NOT NULL)", ci) == '("Code" IS NOT NULL)'
    assert ms_tsql.default_for("(N'A')", "Code", ci, False) == "('A')"      # a default compares nothing
    cs = Table(schema="dbo", name="U", columns=[Column("Code", "nvarchar", collation="Latin1_General_100_BIN2")])
    assert ms_tsql.translate("([Code]=N'A')", cs) == "(\"Code\" = 'A')"


@pytest.mark.parametrize("tsql,why", [
    ("([Name] like 'a\\%')", "backslash"),
    ("(datalength([Name])>(2))", "datalength() has no PostgreSQL counterpart"),
    ("(ltrim([Name],'x')='a')", "ltrim with 2 arguments"),
    ("([Name] like '[a-c]%')", "character class"),
    ("([Name]+'x'='ax')", "+ on strings"),
    ("(datepart(year,[Created])>(2000))", "datepart() has no PostgreSQL counterpart"),
    ("([Missing]>(0))", "'Missing' is not a column of T"),
    ("(([Score]>(0))", "unbalanced"),
])
def test_refused_with_the_reason(tsql, why):
    with pytest.raises(ms_tsql.Untranslatable, match=why.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        ms_tsql.translate(tsql, T)


@pytest.mark.parametrize("tsql,boolean,pg", [
    ("((0))", True, "false"), ("((1))", False, "((1))"), ("(getdate())", False, "(LOCALTIMESTAMP)"),
    ("(newid())", False, "(gen_random_uuid())"), ("(N'none')", False, "('none')"),
    ("(getutcdate())", False, "((now() AT TIME ZONE 'UTC'))"),
])
def test_defaults(tsql, boolean, pg):
    assert ms_tsql.default_for(tsql, "Active" if boolean else "Score", T, boolean) == pg


def test_a_sql_server_definition_becomes_postgresql_ddl_that_runs(pair):
    """What SQL Server's catalog says of a table (as mssql.describe reads it: defaults, a CHECK,
    a filtered index with INCLUDE and DESC), carried by the PostgreSQL destination and run on a
    real PostgreSQL: each object there as translated; what has no form is listed, not built."""
    import psycopg2
    from so_luigi.dialects.postgres import ddl as pg_ddl, types as pg_types
    from so_luigi.dialects.base import Constraint, Index
    from so_luigi.dialects.postgres.destination import PostgresDestination
    table = Table(schema="dbo", name="T", dialect="mssql", primary_key=["Id"], pk_name="PK_T", columns=[
        Column("Id", "int", False, source_type="int"), Column("Score", "int", False, source_type="int",
                                                               default="((0))"),
        Column("Name", "nvarchar", True, 40, source_type="nvarchar(40)", default="(N'none')"),
        Column("Active", "bit", False, source_type="bit", default="((1))"),
        Column("Created", "datetime", False, source_type="datetime", default="(getdate())"),
        Column("Odd", "int", True, source_type="int", default="(datepart(year,getdate()))")])
    table.indexes = [Index("IX_T_Score", [["Score", "DESC"]], include=["Name"], where="([Score]>(10))", plain=False),
                     Index("IX_T_Odd", [["Odd", "ASC"]], where="([Name] like '[a-c]%')", plain=False)]
    table.constraints = [Constraint("CK_T_Score", "check", "([Score]>=(0))"),
                         Constraint("CK_T_Active", "check", "([Active]=(1) OR [Score]>(5))", validated=False)]
    pg_types.map_table(table, "mssql")
    dst = PostgresDestination(pair.target())
    dst.carry(table)
    assert [what for what, _ in table.not_carried] == [
        "default of Odd ((datepart(year,getdate())))", "index IX_T_Odd (WHERE ([Name] like '[a-c]%'))"]
    conn = psycopg2.connect(pair.target_url)
    try:
        with conn.cursor() as cur:
            for statement in pg_ddl.create_table_statements("public", table):
                cur.execute(statement)
            for statement, what in pg_ddl.default_statements("public", table):
                pg_ddl.optional(statement, what, table)(cur)
            for statement in pg_ddl.finish_table_sql("public", table):
                statement(cur) if callable(statement) else cur.execute(statement)
            assert len(table.not_carried) == 2              # the destination refused nothing
            cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'T' AND indexname LIKE '%%IX_T_Score'")
            assert cur.fetchone()[0].endswith('("Score" DESC) INCLUDE ("Name") WHERE ("Score" > 10)')
            cur.execute("""INSERT INTO "T" ("Id") VALUES (1) RETURNING "Score", "Name", "Active", "Created" IS NOT NULL""")
            assert cur.fetchone() == (0, "none", True, True)
            cur.execute("SELECT conname, convalidated FROM pg_constraint WHERE contype = 'c' AND conrelid = '\"T\"'::regclass")
            assert sorted(cur.fetchall()) == [("CK_T_Active", False), ("CK_T_Score", True)]
            with pytest.raises(psycopg2.errors.CheckViolation):
                cur.execute("""INSERT INTO "T" ("Id", "Score") VALUES (2, -1)""")
    finally:
        conn.rollback()
        conn.close()


COMPUTED = Table("dbo", "P", [Column("Id", "int"), Column("First", "nvarchar"), Column("d", "decimal"),
                              Column("Twice", "int", computed="([Id]*(2))")])


@pytest.mark.parametrize("tsql,pg", [
    ("([Id]*(2))", '("Id" * (2))'),
    ("([Id]/(2))", '("Id" / (2))'),                       # integer division in both
    ("(isnull([d],(0))+abs([Id]))", '(coalesce("d", (0)) + abs("Id"))'),
])
def test_a_computed_column_over_numbers_becomes_a_generated_one(tsql, pg):
    assert ms_tsql.generated(tsql, COMPUTED) == pg


@pytest.mark.parametrize("tsql,why", [
    ("([d]/(2))", "division over decimals"),
    ("([Id]/(2.0))", "division over decimals"),
    ("([First]+N'x')", "only arithmetic over numbers"),
    ("(upper([First]))", "upper()"),
    ("(CAST([Id] AS decimal(10,2))/(3))", "CAST()"),
    ("([Twice]+(1))", "itself computed"),
    ("(getdate())", "getdate()"),
])
def test_a_computed_column_that_might_compute_otherwise_stays_plain(tsql, why):
    with pytest.raises(ms_tsql.Untranslatable, match=why):
        ms_tsql.generated(tsql, COMPUTED)
