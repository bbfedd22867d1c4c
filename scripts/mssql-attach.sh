#!/usr/bin/env bash
# Attach Brent Ozar's StackOverflow database files to the compose stack's SQL Server, once.
# Runs in the SQL Server image (it has sqlcmd); the files are on the mssql-files volume at /so.
set -euo pipefail
db="${SO_DATABASE:-StackOverflow2010}"
mdf="/so/${SO_MDF:-StackOverflow2010.mdf}"
ldf="/so/${SO_LDF:-StackOverflow2010_log.ldf}"
sqlcmd=(/opt/mssql-tools18/bin/sqlcmd -C -S "${MSSQL_HOST:-sqlserver}" -U sa -P "$MSSQL_SA_PASSWORD" -b)

for f in "$mdf" "$ldf"; do
    [ -r "$f" ] || { echo "mssql-attach: $f not found: put the .mdf/.ldf files in \$SO_FILES_DIR" >&2; exit 1; }
done
for _ in $(seq 60); do "${sqlcmd[@]}" -Q "SELECT 1" -o /dev/null && break; sleep 2; done

"${sqlcmd[@]}" -Q "
IF DB_ID(N'$db') IS NULL
    CREATE DATABASE [$db] ON (FILENAME = N'$mdf'), (FILENAME = N'$ldf') FOR ATTACH;
ALTER DATABASE [$db] SET COMPATIBILITY_LEVEL = 160;"
echo "mssql-attach: $db attached"
