"""Bad input: one clear line naming the thing to fix, a non-zero exit, no traceback, nothing
marked complete, and never a password in the output."""
import pytest

from so_luigi.testing import sample
from so_luigi.config import parse_url
from so_luigi.errors import ConfigError


def assert_clean_failure(pair, result, *expected):
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("so_luigi: error:")]
    assert errors, out[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    assert "Traceback" not in out, out[-3000:]
    assert "s3cret" not in out and "wrongpw" not in out
    try:
        done = pair.query("target", "SELECT count(*) FROM so_luigi.tables WHERE completed_at IS NOT NULL")[0][0]
    except Exception:  # noqa: BLE001 -- no marker schema at all: nothing marked either
        done = 0
    assert done == 0


@pytest.fixture
def small(pair):
    sample.fill(pair.source(), scale=0.001, names=["Users", "Badges", "VoteTypes"], log=lambda *a: None)
    return pair


def with_url(url, **changes):
    p = parse_url(url)
    user = changes.get("user", p.user)
    password = changes.get("password", "")
    host = changes.get("host", p.host)
    port = changes.get("port", p.port)
    db = changes.get("database", p.database)
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"postgresql://{auth}{host}:{port}/{db}"


def test_wrong_password(small):
    small.query("target", "CREATE ROLE so_pw LOGIN PASSWORD 's3cret'")
    try:
        env = small.env(SO_TARGET_URL=with_url(small.target_url, user="so_pw", password="wrongpw"))
        assert_clean_failure(small, small.run(env=env), "wrong password or user 'so_pw'", "***")
    finally:
        small.query("target", "DROP ROLE so_pw")


def test_unknown_host(small):
    env = small.env(SO_SOURCE_URL=with_url(small.source_url, host="no-such-host.invalid"))
    assert_clean_failure(small, small.run(env=env), "unknown host 'no-such-host.invalid'")


def test_missing_database(small):
    env = small.env(SO_SOURCE_URL=with_url(small.source_url, database="no_such_db"))
    assert_clean_failure(small, small.run(env=env), "database 'no_such_db' does not exist")


def test_missing_schema(small):
    env = small.env(SO_SOURCE_SCHEMA="nope")
    assert_clean_failure(small, small.run(env=env), "schema 'nope' not found")


def test_missing_table_with_a_hint(small):
    assert_clean_failure(small, small.run("--tables", "Users,badges,Nope"),
                         "'badges' (did you mean 'Badges'?)", "'Nope'")


def test_destination_that_cannot_be_written(small):
    small.query("target", "CREATE ROLE so_ro LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        env = small.env(SO_TARGET_URL=with_url(small.target_url, user="so_ro"))
        assert_clean_failure(small, small.run(env=env), "permission denied")
    finally:
        small.query("target", "DROP OWNED BY so_ro; DROP ROLE so_ro")


def test_an_unmappable_type_leaves_its_table_out_listed_and_the_rest_is_copied(small):
    # a table's row type as a column's type: not one so_luigi creates (enums, domains and the
    # like are: tests/test_whole_database.py)
    small.query("source", 'CREATE TABLE "Row" (a int); '
                          'CREATE TABLE "Feelings" ("Id" int PRIMARY KEY, "m" "Row")')
    out = small.run()
    assert out.returncode == 30, out.stderr[-3000:]       # not complete: one table left out
    assert "so_luigi: error: every table is copied and verified, but 1 object(s) are not carried" in out.stderr
    assert '  table Feelings: cannot map 1 column type(s) to PostgreSQL: public.Feelings.m (public."Row"); ' \
           "add an override in config/type_overrides.json" in out.stdout, out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    tables = small.query("target", "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    assert ("Feelings",) not in tables and ("Row",) in tables
    # when no table of the selection can be copied, the run stops before any data moves, naming it
    alone = small.run("--tables", "Feelings", "--run-id", "alone")
    assert alone.returncode == 35, alone.stderr[-3000:]
    assert 'so_luigi: error: no table can be copied: cannot map 1 column type(s) to PostgreSQL: public.Feelings.m ' \
           '(public."Row"); add an override in config/type_overrides.json' in alone.stderr, alone.stderr[-3000:]
    assert small.query("target", "SELECT count(*) FROM so_luigi.tables WHERE run_id = 'alone'") == [(0,)]


def test_bad_url_scheme_and_missing_url(small):
    env = small.env(SO_SOURCE_URL="mysql://u:s3cret@h/db")
    assert_clean_failure(small, small.run(env=env), "scheme 'mysql'")
    with pytest.raises(ConfigError, match="no target database configured"):
        parse_url("", "target")


def test_existing_foreign_table_is_never_dropped(small):
    small.query("target", 'CREATE TABLE "Users" (x int); INSERT INTO "Users" VALUES (1)')
    assert_clean_failure(small, small.run("--tables", "Users"), "public.Users already exists and was not created by so_luigi")
    assert small.query("target", 'SELECT x FROM "Users"') == [(1,)]


def test_percent_in_the_marker_schema_name_is_refused(small):
    result = small.run(env=small.env(SO_MARKER_SCHEMA="runs 100%"))
    assert_clean_failure(small, result, "marker schema 'runs 100%'", "SO_MARKER_SCHEMA")
