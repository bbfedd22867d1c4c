"""PostgreSQL CHECK constraints into T-SQL (dialects/postgres/to_tsql.py): numbers and their
comparisons carried with the same meaning, everything else refused with the reason."""
import pytest

from so_luigi.dialects.base import Column, Table
from so_luigi.dialects.postgres import to_tsql

TABLE = Table("public", "P", [Column("n", "int4", source_type="integer"),
                              Column("price", "numeric", source_type="numeric(10,2)"),
                              Column("code", "varchar", source_type="character varying(10)"),
                              Column("flag", "bool", source_type="boolean")])


@pytest.mark.parametrize("pg,tsql", [
    ("CHECK ((n >= 0))", "((([n] >= 0)))"),
    ("CHECK (((price > (0)::numeric) AND (n < 100)))", "(((([price] > 0) AND ([n] < 100))))"),
    ("CHECK (((n >= '-5'::integer) OR (n IS NULL)))", "(((([n] >= -5) OR ([n] IS NULL))))"),
    ("CHECK ((n = ANY (ARRAY[1, 2])))", None),
    ("CHECK ((n IN (1, 2, 3)))", "((([n] IN (1, 2, 3))))"),
    ("CHECK (((n % 2) = 0)) NOT VALID", "(((([n] % 2) = 0)))"),
    ("CHECK ((NOT (n = 5)))", "(((NOT (([n] = 5)))))"),
    ("CHECK ((n IS NOT NULL))", "((([n] IS NOT NULL)))"),
    ("CHECK ((NOT (n IS NOT NULL)))", "((([n] IS NULL)))"),
])
def test_numbers_and_their_comparisons_are_carried(pg, tsql):
    if tsql is None:
        with pytest.raises(to_tsql.Untranslatable):
            to_tsql.check(pg, TABLE)
    else:
        assert to_tsql.check(pg, TABLE) == tsql


@pytest.mark.parametrize("pg,tsql", [
    ("CHECK (((code)::text <> 'x'::text))", "(((([code] + N'.') COLLATE Latin1_General_100_BIN2 <> N'x.')))"),
    ("CHECK (((code)::text = ANY ((ARRAY['a'::character varying, 'it''s '::character varying])::text[])))",
     "(((([code] + N'.') COLLATE Latin1_General_100_BIN2 IN (N'a.', N'it''s .'))))"),
    ("CHECK ((code IN ('a', 'b')))", "(((([code] + N'.') COLLATE Latin1_General_100_BIN2 IN (N'a.', N'b.'))))"),
])
def test_text_equal_or_not_to_strings_is_carried_by_exact_characters(pg, tsql):
    assert to_tsql.check(pg, TABLE) == tsql


@pytest.mark.parametrize("pg,why", [
    ("CHECK (((code)::text > 'x'::text))", "not translated"),
    ("CHECK (((code)::text ~~ 'x%'::text))", "not translated"),
    ("CHECK ((n > 'a'::text))", "not translated"),
    ("CHECK ((length((code)::text) > 1))", "not translated"),
    ("CHECK (((price / (2)::numeric) > (1)::numeric))", "division"),
    ("CHECK (flag)", "not a number"),
    ("CHECK ((nope > 1))", "not a column"),
    ("CHECK ((n > 0)) NO INHERIT", "NO INHERIT"),
])
def test_text_division_booleans_and_functions_are_refused_with_why(pg, why):
    with pytest.raises(to_tsql.Untranslatable, match=why):
        to_tsql.check(pg, TABLE)


INDEXED = Table("public", "I", [Column("n", "int4", source_type="integer"), Column("Big Name", "text"),
                                Column("d", "timestamp", source_type="timestamp without time zone")])


@pytest.mark.parametrize("definition,carried", [
    ("btree (n) WHERE (n > 0)", ([["n", "ASC"]], [], "[n] > 0")),
    ('btree ("Big Name" DESC, n) INCLUDE (d) WHERE ((d IS NULL) AND (n = ANY (ARRAY[1, 2])))',
     ([["Big Name", "DESC"], ["n", "ASC"]], ["d"], "[d] IS NULL AND [n] IN (1, 2)")),
    ("btree (n) INCLUDE (d, \"Big Name\")", ([["n", "ASC"]], ["d", "Big Name"], "")),
    ("btree (n) WHERE (NOT (d IS NULL))", ([["n", "ASC"]], [], "[d] IS NOT NULL")),
])
def test_partial_indexes_become_filtered_and_include_columns_stay(definition, carried):
    assert to_tsql.index(definition, INDEXED) == carried


@pytest.mark.parametrize("definition,why", [
    ('btree (lower("Big Name"))', "not a plain column"),
    ("btree (n DESC NULLS LAST)", "not a plain column"),
    ("hash (n)", "a hash index, which SQL Server has no counterpart for"),
    ("btree (n) WHERE ((n > 0) OR (n < '-5'::integer))", "joined by AND"),
    ("btree (n) WHERE (\"Big Name\" = 'x'::text)", "compares text"),
    ("btree (n) WHERE ((\"Big Name\")::text = 'x'::text)", "compares text"),
    ("btree (n) WHERE ((n + 1) > 2)", "compares a column with a constant"),
])
def test_indexes_a_filtered_index_cannot_be_are_refused_with_why(definition, why):
    with pytest.raises(to_tsql.Untranslatable, match=why):
        to_tsql.index(definition, INDEXED)
