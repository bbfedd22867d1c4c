"""The real Stack Exchange dump in ../shared/data/stackexchange: load it as a source, check it
against the XML, replicate it and compare exactly."""
import os
import re
from datetime import datetime

import pytest

from so_luigi import dump
from conftest import DUMP, assert_same_tables

pytestmark = pytest.mark.skipif(not os.path.isdir(DUMP), reason=f"real dump not found at {DUMP}")


def xml_row_count(name):
    with open(os.path.join(DUMP, dump.FILES[name]), encoding="utf-8-sig") as fh:
        return sum(1 for line in fh if re.match(r"\s*<row ", line))


@pytest.mark.parametrize("mode", ["streaming", "bulk"])
def test_real_dump_loads_and_replicates_exactly(pair, mode):
    counts = dump.load_dump(DUMP, pair.source(), log=lambda *a: None)
    for name in dump.FILES:
        assert counts[name] == xml_row_count(name), name
        assert pair.query("source", f'SELECT count(*) FROM "{name}"')[0][0] == counts[name]
    # spot checks against the XML as its README describes it
    assert pair.query("source", 'SELECT "DisplayName" FROM "Users" WHERE "Id" = -1') == [("Community",)]
    assert pair.query("source", 'SELECT min("Id"), max("Id"), count(*) FROM "Posts"') == [(1, 1522, 1446)]
    assert pair.query("source", 'SELECT "Date" FROM "Badges" WHERE "Id" = 1') == [(datetime(2010, 8, 25, 19, 26, 49, 550000),)]
    body = pair.query("source", 'SELECT "Text" FROM "PostHistory" WHERE "Id" = 1')[0][0]
    assert body.startswith("Post your ideas for a dot-com domain name for this website\r\n\r\nPlease follow")

    result = pair.run("--workers", "2", "--chunk-rows", "1000", "--mode", mode)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok: count+checksum") == len(counts)
    assert_same_tables(pair, list(counts))
