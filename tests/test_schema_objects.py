"""PostgreSQL -> PostgreSQL carries the schema of every copied table: each index as
pg_get_indexdef defines it (method, operator class, collation, order, expression, predicate,
INCLUDE), each UNIQUE, EXCLUDE, CHECK and FOREIGN KEY constraint as pg_get_constraintdef defines
it (NOT VALID where the source's is), column defaults and collations, identity and serial columns
with their sequences' options and positions. Foreign keys come last, NOT VALID then VALIDATE; one
whose rows do not hold fails in one line naming it, and a rerun after the rows are fixed resumes
at that step."""
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from conftest import ROOT

SCHEMA = r"""
CREATE TABLE "Parent" (
    id bigserial PRIMARY KEY,
    code text COLLATE "C" NOT NULL,
    name text DEFAULT 'unnamed',
    created timestamptz NOT NULL DEFAULT now(),
    tags jsonb DEFAULT '{}'::jsonb,
    during tsrange,
    n int CONSTRAINT parent_n_check CHECK (n >= 0),
    CONSTRAINT parent_code_key UNIQUE (code),
    CONSTRAINT parent_no_overlap EXCLUDE USING gist (during WITH &&));
CREATE INDEX parent_tags_gin ON "Parent" USING gin (tags jsonb_path_ops);
CREATE INDEX parent_during_gist ON "Parent" USING gist (during);
CREATE INDEX parent_created_brin ON "Parent" USING brin (created) WITH (pages_per_range = 16);
CREATE INDEX parent_name_hash ON "Parent" USING hash (name);
CREATE INDEX parent_name_lower ON "Parent" (lower(name));
CREATE INDEX parent_name_desc ON "Parent" (name DESC NULLS LAST, n);
CREATE INDEX parent_partial ON "Parent" (n) WHERE n > 10;
CREATE INDEX parent_include ON "Parent" (code) INCLUDE (name);
CREATE INDEX parent_pattern ON "Parent" (name text_pattern_ops);
CREATE INDEX parent_collate ON "Parent" (name COLLATE "C");

CREATE TABLE "Outside" (id int PRIMARY KEY);
CREATE TABLE "Child" (
    id int GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 5) PRIMARY KEY,
    parent_id bigint CONSTRAINT child_parent_fk REFERENCES "Parent" (id) ON DELETE CASCADE,
    outside_id int CONSTRAINT child_outside_fk REFERENCES "Outside" (id),
    a int, b int, note text,
    CONSTRAINT child_ab_key UNIQUE (a, b) DEFERRABLE INITIALLY DEFERRED);
CREATE UNIQUE INDEX child_note_unique ON "Child" (note) WHERE note IS NOT NULL;

CREATE TABLE "Pair" (
    x int, y int, parent_x int, parent_y int,
    PRIMARY KEY (x, y),
    CONSTRAINT pair_parent_fk FOREIGN KEY (parent_x, parent_y) REFERENCES "Pair" (x, y)
        MATCH FULL ON UPDATE CASCADE ON DELETE SET NULL);

INSERT INTO "Parent" (code, name, tags, during, n)
SELECT 'c' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'name ' || g END, jsonb_build_object('g', g),
       tsrange('2020-01-01'::timestamp + g * interval '1 day', '2020-01-01'::timestamp + (g + 1) * interval '1 day'),
       g % 50
FROM generate_series(1, 300) g;
DELETE FROM "Parent" WHERE id > 290;                -- the sequence stands past the largest id
INSERT INTO "Outside" VALUES (1), (2);
INSERT INTO "Child" (parent_id, outside_id, a, b, note)
SELECT 1 + g % 290, 1 + g % 2, g, g % 3, CASE WHEN g % 2 = 0 THEN 'note ' || g END FROM generate_series(1, 200) g;
INSERT INTO "Pair" SELECT g, g, NULL, NULL FROM generate_series(1, 10) g;
INSERT INTO "Pair" SELECT g, g + 1, g % 10 + 1, g % 10 + 1 FROM generate_series(11, 100) g;
-- NOT VALID in the source, with a row that breaks each: NOT VALID in the copy
INSERT INTO "Child" (parent_id, a, b, note) VALUES (5, 1000, 1, repeat('x', 150));
ALTER TABLE "Child" ADD CONSTRAINT child_note_check CHECK (length(note) < 100) NOT VALID;
ALTER TABLE "Child" ADD CONSTRAINT child_b_fk FOREIGN KEY (b) REFERENCES "Parent" (id) NOT VALID;
ANALYZE;
"""
TABLES = ["Parent", "Child", "Pair"]

INDEXES = """SELECT c.relname, i.relname, pg_get_indexdef(i.oid) FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = ANY(%s)"""
CONSTRAINTS = """SELECT c.relname, k.conname, pg_get_constraintdef(k.oid), k.convalidated FROM pg_constraint k
                 JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relname = ANY(%s)"""
COLUMNS = """SELECT c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid), co.collname, a.attidentity, a.attnotnull,
                    format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             LEFT JOIN pg_collation co ON co.oid = a.attcollation
             WHERE n.nspname = 'public' AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped"""
SEQUENCES = """SELECT s.sequencename, s.data_type::text, s.start_value, s.increment_by, s.min_value, s.max_value,
                      s.cache_size, s.cycle, s.last_value
               FROM pg_sequences s WHERE s.schemaname = 'public' AND s.sequencename NOT LIKE 'Outside%%'"""


def luigi_cmd(*args):
    return [sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
            "--workers", "2", "--tables", ",".join(TABLES), *args]


@pytest.fixture
def schema_pair(pair):
    pair.query("source", SCHEMA)
    return pair


def catalog(pair, which, sql):
    return sorted(pair.query(which, sql, (TABLES,)) if "%s" in sql else pair.query(which, sql))


@pytest.mark.parametrize("mode", ["streaming", "bulk"])
def test_every_index_and_constraint_is_defined_as_in_the_source(schema_pair, mode):
    pair = schema_pair
    out = subprocess.run(luigi_cmd("--mode", mode), cwd=ROOT, env=pair.env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for sql in (INDEXES, COLUMNS, SEQUENCES):
        assert catalog(pair, "target", sql) == catalog(pair, "source", sql)
    # every constraint but the foreign key to a table the run does not copy
    assert catalog(pair, "target", CONSTRAINTS) == [r for r in catalog(pair, "source", CONSTRAINTS)
                                                    if r[1] != "child_outside_fk"]
    # the report: what was carried, the foreign keys' state, and what was not (with why)
    assert "foreign keys: 2 validated, 1 NOT VALID" in out.stdout
    assert "Child: foreign key child_outside_fk: references public.Outside, which this run does not copy" in out.stdout
    # the copy goes on as the source would: the next ids, ALWAYS refused, the constraints enforced
    new = 'INSERT INTO "Parent" (code) VALUES (\'new\') RETURNING id, name'
    assert pair.query("target", new) == pair.query("source", new) == [(301, "unnamed")]
    with pytest.raises(psycopg2.Error, match="cannot insert a non-DEFAULT value into column \"id\""):
        pair.query("target", 'INSERT INTO "Child" (id) VALUES (1)')
    with pytest.raises(psycopg2.errors.ExclusionViolation):
        pair.query("target", """INSERT INTO "Parent" (code, during) VALUES ('x', '[2020-01-05,2020-01-06)')""")
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        pair.query("target", 'INSERT INTO "Child" (parent_id) VALUES (999)')


def test_no_constraints_leaves_foreign_keys_and_checks_out(schema_pair):
    pair = schema_pair
    out = subprocess.run(luigi_cmd("--no-constraints"), cwd=ROOT, env=pair.env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    kinds = sorted(r[0] for r in pair.query("target", "SELECT contype FROM pg_constraint k JOIN pg_class c ON "
                                                      "c.oid = k.conrelid WHERE c.relname = ANY(%s)", (TABLES,)))
    assert kinds == sorted(["p", "p", "p", "u", "u", "x"])
    assert "Parent: check parent_n_check (CHECK ((n >= 0))): left out: --no-constraints" in out.stdout
    assert catalog(pair, "target", INDEXES) == catalog(pair, "source", INDEXES)


def test_a_foreign_key_that_does_not_hold_fails_in_one_line_and_resumes_after_the_fix(schema_pair):
    pair = schema_pair
    proc = subprocess.Popen(luigi_cmd(), cwd=ROOT, env=pair.env(SO_LUIGI_PAUSE_AT="foreign-key"),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    paused = threading.Event()
    threading.Thread(target=lambda: [paused.set() for line in proc.stderr if "paused at foreign-key" in line],
                     daemon=True).start()
    assert paused.wait(180), "the run never reached its foreign keys"
    for _ in range(240):                # the other worker completes the other tables meanwhile
        if pair.query("target", "SELECT count(*) FROM so_luigi.tables WHERE completed_at IS NOT NULL")[0][0] == 3:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the tables were never all complete")
    # every table complete; a referenced row goes missing in the destination before the last step
    row = pair.query("target", 'SELECT row_to_json(p)::text FROM "Parent" p WHERE id = 7')[0][0]
    pair.query("target", 'DELETE FROM "Parent" WHERE id = 7')
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    failed = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert failed.returncode != 0
    said = [line for line in failed.stderr.splitlines() if "does not hold" in line]
    assert said and "foreign key child_parent_fk of Child does not hold in the destination" in said[0], \
        failed.stderr[-3000:]
    assert 'Key (parent_id)=(7) is not present in table "Parent"; correct those rows' in said[0], said[0]
    assert pair.query("target", "SELECT convalidated FROM pg_constraint WHERE conname = 'child_parent_fk'") == [(False,)]
    pair.query("target", 'INSERT INTO "Parent" SELECT * FROM json_populate_record(NULL::"Parent", %s)', (row,))
    again = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert catalog(pair, "target", CONSTRAINTS) == [r for r in catalog(pair, "source", CONSTRAINTS)
                                                    if r[1] != "child_outside_fk"]


def test_schema_only_creates_every_object_and_no_rows(schema_pair):
    pair = schema_pair
    out = subprocess.run(luigi_cmd("--schema-only"), cwd=ROOT, env=pair.env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "schema only: 3 tables created without rows" in out.stdout and "3 foreign keys" in out.stdout, out.stdout
    assert "Child: foreign key child_outside_fk: references public.Outside" in out.stdout
    assert catalog(pair, "target", INDEXES) == catalog(pair, "source", INDEXES)
    assert catalog(pair, "target", CONSTRAINTS) == [r for r in catalog(pair, "source", CONSTRAINTS)
                                                    if r[1] != "child_outside_fk"]
    assert [pair.query("target", f'SELECT count(*) FROM "{t}"')[0][0] for t in TABLES] == [0, 0, 0]
    # again: the same schema, made afresh; then a run that copies the rows over it
    again = subprocess.run(luigi_cmd("--schema-only"), cwd=ROOT, env=pair.env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert catalog(pair, "target", INDEXES) == catalog(pair, "source", INDEXES)
    copy = subprocess.run(luigi_cmd(), cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert copy.returncode == 0, copy.stderr[-3000:]
    assert [pair.query("target", f'SELECT count(*) FROM "{t}"')[0][0] for t in TABLES] == [290, 201, 100]
    assert catalog(pair, "target", INDEXES) == catalog(pair, "source", INDEXES)


def test_objects_the_destination_refuses_are_listed_and_the_copy_goes_on(pair):
    """A default, a CHECK and an index calling a function only the source has: the rows are
    copied and verified, and each of the three is listed with the destination's words."""
    pair.query("source", """
        CREATE FUNCTION public.shout(t text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT upper(t)';
        CREATE TABLE "Loud" (id int PRIMARY KEY, word text DEFAULT public.shout('hi'),
                             CONSTRAINT loud_word_check CHECK (public.shout(word) <> 'NO'));
        CREATE INDEX loud_shout ON "Loud" (public.shout(word));
        CREATE INDEX loud_word ON "Loud" (word);
        INSERT INTO "Loud" SELECT g, 'w' || g FROM generate_series(1, 100) g;""")
    out = subprocess.run([sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
                          "--tables", "Loud"], cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 30, out.stderr[-3000:]          # every row is there, but the copy is not complete
    assert "3 object(s) are not carried" in out.stderr
    assert "ok: count+checksum" in out.stdout
    refused = [line for line in out.stdout.splitlines() if "the destination refused it" in line]
    assert len(refused) == 3, out.stdout
    assert all("public.shout" in line and "does not exist" in line for line in refused), refused
    assert pair.query("target", "SELECT indexname FROM pg_indexes WHERE tablename = 'Loud' ORDER BY 1") == \
        [("Loud_pkey",), ("loud_word",)]
    report = subprocess.run([sys.executable, "-m", "so_luigi", "report"], cwd=ROOT, env=pair.env(),
                            capture_output=True, text=True)
    assert report.stdout.count("the destination refused it") == 3, report.stdout


def test_foreign_keys_between_partitioned_tables_in_bulk_mode(pair):
    """Bulk mode with the partitioned layout makes both tables range-partitioned: the key is added
    there checked, in one statement (PostgreSQL takes no NOT VALID key on a partitioned table
    before 18)."""
    pair.query("source", """
        CREATE TABLE "Mum" (id int PRIMARY KEY, n int);
        CREATE TABLE "Kid" (id int PRIMARY KEY, mum_id int CONSTRAINT kid_mum_fk REFERENCES "Mum" (id));
        INSERT INTO "Mum" SELECT g, g FROM generate_series(1, 100) g;
        INSERT INTO "Kid" SELECT g, 1 + g % 100 FROM generate_series(1, 300) g;""")
    out = subprocess.run([sys.executable, "-m", "luigi", "--module", "so_luigi", "ReplicateAll", "--local-scheduler",
                          "--mode", "bulk", "--layout", "partitioned", "--chunk-rows", "40", "--workers", "2"],
                         cwd=ROOT, env=pair.env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert pair.query("target", "SELECT relname, relkind FROM pg_class WHERE relname IN ('Mum', 'Kid') ORDER BY 1") == \
        [("Kid", "p"), ("Mum", "p")]
    assert pair.query("target", "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f' "
                                "AND conparentid = 0") == [("kid_mum_fk", True)]
    assert "foreign keys: 1 validated" in out.stdout
