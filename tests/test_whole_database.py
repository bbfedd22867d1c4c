"""A whole PostgreSQL database, one feature at a time (issue 30): what the StackOverflow shape
never had. Each test builds its own source and compares the copy with it independently of
so_luigi (the catalog, and every row through PostgreSQL's own COPY output)."""
import pytest

from conftest import assert_same_tables

GENERATED = """
CREATE TABLE "Item" (
    "Id" int PRIMARY KEY,
    price numeric(10,2) NOT NULL,
    qty int,
    total numeric GENERATED ALWAYS AS (price * qty) STORED,
    label text NOT NULL GENERATED ALWAYS AS ('item ' || "Id"::text) STORED);
INSERT INTO "Item" ("Id", price, qty)
SELECT g, g / 7.0, CASE WHEN g % 5 = 0 THEN NULL ELSE g % 13 END FROM generate_series(1, 5000) g;
ANALYZE "Item";
"""

GENERATION = """SELECT a.attname, a.attgenerated, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE a.attrelid = '"Item"'::regclass AND a.attnum > 0 ORDER BY a.attnum"""


@pytest.mark.parametrize("mode", ["streaming", "bulk"])
def test_generated_columns_are_created_with_their_expression_and_verified(pair, mode):
    """Not copied as data: the destination computes them (in bulk mode, in each range partition of
    the partitioned layout too), and the verification compares the stored values."""
    pair.query("source", GENERATED)
    out = pair.run("--workers", "2", "--chunk-rows", "1000", "--mode", mode)
    assert out.returncode == 0, out.stderr[-3000:]
    assert pair.query("target", GENERATION) == pair.query("source", GENERATION)
    assert [g for _, g, _ in pair.query("target", GENERATION)] == ["", "", "", "s", "s"]
    assert_same_tables(pair, ["Item"])
    # bulk mode's default layout: a range partition per planned partition, each with the columns
    kind = pair.query("target", "SELECT relkind FROM pg_class WHERE oid = '\"Item\"'::regclass")[0][0]
    assert kind == ("p" if mode == "bulk" else "r")
    assert "Item" in out.stdout and "ok: count+checksum" in out.stdout
    # the copy computes them for new rows as the source does
    new = """INSERT INTO "Item" ("Id", price, qty) VALUES (9999, 2.50, 4) RETURNING total, label"""
    assert pair.query("target", new) == pair.query("source", new)
