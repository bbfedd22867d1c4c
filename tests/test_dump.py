"""Building a source from a Stack Exchange dump: the real one in ../shared/data/stackexchange
(skipped only when absent) from its folder and from a .7z, checked against the XML and then
replicated exactly; old dump formats; reruns; the SODDI zero fill; the CLI and the Luigi task."""
import os
import re
import subprocess
import sys
from datetime import datetime

import pytest
import sqlglot

from so_luigi import dump
from so_luigi.testing import sample
from conftest import DUMP, ROOT, assert_same_tables
from so_luigi.dialects.mssql import bulk as ms_bulk

real_dump = pytest.mark.skipif(not os.path.isdir(DUMP), reason=f"real dump not found at {DUMP}")


def xml_row_count(name):
    with open(os.path.join(DUMP, dump.FILES[name]), encoding="utf-8-sig") as fh:
        return sum(1 for line in fh if re.match(r"\s*<row ", line))


def quiet(*args):
    pass


@real_dump
@pytest.mark.parametrize("mode", ["streaming", "bulk"])
def test_real_dump_loads_exactly_and_replicates_exactly(pair, mode):
    counts, ignored = dump.load_dump(DUMP, pair.source(), log=quiet)
    for name in dump.FILES:
        assert counts[name] == xml_row_count(name), name
        assert pair.query("source", f'SELECT count(*) FROM "{name}"')[0][0] == counts[name]
    q = lambda sql: pair.query("source", sql)  # noqa: E731
    assert q('SELECT "DisplayName" FROM "Users" WHERE "Id" = -1') == [("Community",)]
    assert q('SELECT "DisplayName" FROM "Users" WHERE "Id" = 122') == [("Tadeusz A. Kadłubowski",)]
    assert q('SELECT min("Id"), max("Id"), count(*) FROM "Posts"') == [(1, 1522, 1446)]      # ids with gaps
    assert q('SELECT "Date" FROM "Badges" WHERE "Id" = 1') == [(datetime(2010, 8, 25, 19, 26, 49, 550000),)]
    text = q('SELECT "Text" FROM "PostHistory" WHERE "Id" = 1')[0][0]
    assert text.startswith("Post your ideas for a dot-com domain name for this website\r\n\r\nPlease follow")
    # answers have no ViewCount in the XML: NOT NULL in the schema, so 0 as SODDI; others NULL
    assert q('SELECT count(*) FROM "Posts" WHERE "ViewCount" = 0') == [(1446 - 453,)]
    assert q('SELECT count(*) FROM "Posts" WHERE "ParentId" IS NULL') == [(1446 - 971,)]
    assert ignored[("Badges", "Class")] == 6585 and ("Posts", "OwnerDisplayName") in ignored
    assert ("Tags", "IsRequired") in ignored

    result = pair.run("--workers", "2", "--chunk-rows", "1000", "--mode", mode)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok: count+checksum") == len(counts)
    assert_same_tables(pair, list(counts))


@real_dump
def test_7z_archive_rerun_and_zero_fill(pair, tmp_path):
    import py7zr
    archive = tmp_path / "bicycles.meta.stackexchange.com.7z"
    with py7zr.SevenZipFile(archive, "w") as z:
        for name in ("Posts.xml", "Users.xml", "Votes.xml"):
            z.write(os.path.join(DUMP, name), name)
    counts, _ = dump.load_dump(str(archive), pair.source(), post_history=False, tags=False, log=quiet)
    assert {k: counts[k] for k in ("Posts", "Users", "Votes")} == \
        {k: xml_row_count(k) for k in ("Posts", "Users", "Votes")}
    assert "Badges" not in counts                                  # not in this archive: skipped
    # a rerun replaces, never appends; SODDI's zero fill on request
    counts2, _ = dump.load_dump(str(archive), pair.source(), post_history=False, tags=False, zero_fill=True, log=quiet)
    assert counts2 == counts
    assert pair.query("source", 'SELECT count(*) FROM "Posts"') == [(1446,)]
    assert pair.query("source", 'SELECT count(*) FROM "Posts" WHERE "ParentId" = 0') == [(1446 - 971,)]


def test_old_dump_format_loads(pair, tmp_path):
    (tmp_path / "Users.xml").write_text(
        '\ufeff<?xml version="1.0" encoding="utf-8"?>\n<users>\n'
        '  <row Id="-1" Reputation="1" CreationDate="2008-07-31T00:00:00.000" DisplayName="Community" '
        'EmailHash="a007be5a61f6aa8f3e85ae2fc18dd66e" LastAccessDate="2008-08-26T00:16:53.810" '
        'Location="on the server farm" AboutMe="" Views="649" UpVotes="1" DownVotes="315" Age="9" AccountId="-1" />\n'
        '  <row Id="1" Reputation="100" CreationDate="2008-07-31T14:22:31.287" DisplayName="Jeff &#xE9;" '
        'LastAccessDate="2010-01-01T00:00:00.003" Views="2" UpVotes="3" DownVotes="4" Age="40" '
        'Shiny="new" />\n</users>\n', encoding="utf-8")
    counts, ignored = dump.load_dump(str(tmp_path), pair.source(), log=quiet)
    assert counts["Users"] == 2 and ignored == {("Users", "Shiny"): 1}
    assert pair.query("source", 'SELECT "Id", "Age", "EmailHash", "AboutMe", "AccountId", "DisplayName" '
                                'FROM "Users" ORDER BY "Id"') == [
        (-1, 9, "a007be5a61f6aa8f3e85ae2fc18dd66e", "", -1, "Community"), (1, 40, None, None, None, "Jeff é")]


@real_dump
def test_cli_and_luigi_task(pair):
    out = subprocess.run([sys.executable, "-m", "so_luigi", "load-dump", DUMP, "--to", pair.source_url,
                          "--no-post-history"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Votes" in out.stdout and "ignored attributes" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "so_luigi", "load-dump", "/no/such/dump", "--to", pair.source_url],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.startswith("so-luigi: error: dump /no/such/dump does not exist")

    cmd = [sys.executable, "-m", "luigi", "--module", "so_luigi", "LoadDump", "--dump", DUMP, "--local-scheduler"]
    first = subprocess.run(cmd, cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert pair.query("source", 'SELECT count(*) FROM "PostHistory"') == [(xml_row_count("PostHistory"),)]
    again = subprocess.run(cmd, cwd=ROOT, env=pair.env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "complete ones were encountered" in again.stderr


def test_multi_row_insert_of_the_sample_generator_parses():
    sql = ms_bulk.insert_sql(sample.table_def("PostHistory"), 2)
    assert sql.count("%s") == 18
    sqlglot.parse_one(sql.replace("%s", "NULL"), read="tsql")