#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then runs them.
# PostgreSQL: the tests start their own throwaway server on a free port and stop it afterwards
# (Debian's binaries when present, installed here through apt when missing; pgserver otherwise).
# Any arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v "Running pip as the 'root' user" || true

need=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || need+=(postgresql)
# docker-compose 1.29 validates docker-compose.yml without a Docker engine
command -v docker-compose >/dev/null || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "installing ${need[*]} for the tests" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
            || echo "apt-get could not install ${need[*]}: PostgreSQL falls back to pgserver" >&2
    else
        echo "not installing ${need[*]} (needs apt-get as root): PostgreSQL falls back to pgserver" >&2
    fi
fi

exec python3 -m pytest "$@"
