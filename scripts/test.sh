#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then runs them.
# PostgreSQL: the tests start their own throwaway server on a free port and stop it afterwards
# (Debian's binaries when present, installed here through apt when missing; pgserver otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "Running pip as the 'root'" || true

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "installing Debian's postgresql for the tests" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
            || echo "apt-get could not install postgresql; the tests fall back to pgserver" >&2
    fi
fi
# docker-compose (1.29, Debian) validates docker-compose.yml without an engine
if ! command -v docker-compose >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1) || true
fi

exec python3 -m pytest "$@"
