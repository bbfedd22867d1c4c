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
    ("CHECK ((NOT (n IS NOT NULL)))", "(((NOT (([n] IS NOT NULL)))))"),
])
def test_numbers_and_their_comparisons_are_carried(pg, tsql):
    if tsql is None:
        with pytest.raises(to_tsql.Untranslatable):
            to_tsql.check(pg, TABLE)
    else:
        assert to_tsql.check(pg, TABLE) == tsql


@pytest.mark.parametrize("pg,why", [
    ("CHECK (((code)::text <> 'x'::text))", "not translated"),
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
