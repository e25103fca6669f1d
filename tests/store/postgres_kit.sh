#!/usr/bin/env bash
# Runs the Store conformance kit on store-postgres against a fresh database of its own, made
# on the server at SYNTHORG_TEST_POSTGRES_URL (default: the one scripts/services starts) and
# dropped afterwards. Exits 77 (skipped) when SYNTHORG_TEST_NO_POSTGRES=1.
# Usage: tests/store/postgres_kit.sh <synthorg-conformance> <store-postgres.so> [gtest flags]
set -euo pipefail
runner=$1 plugin=$2
shift 2

if [[ "${SYNTHORG_TEST_NO_POSTGRES:-}" == 1 ]]; then
  echo "postgres_kit: skipped (SYNTHORG_TEST_NO_POSTGRES=1)"
  exit 77
fi
base=${SYNTHORG_TEST_POSTGRES_URL:-postgres://synthorg:synthorg@127.0.0.1:5432/postgres}
# The password goes to psql through PGPASSWORD, not its command line (taken as written: no
# percent-decoding, which test passwords do not need).
if [[ ! "$base" =~ ^(postgres(ql)?://)([^:@/]*)(:([^@/]*))?@([^/]+)/?(.*)$ ]]; then
  echo "postgres_kit: SYNTHORG_TEST_POSTGRES_URL must look like postgres://user:password@host:port/database" >&2
  exit 2
fi
scheme=${BASH_REMATCH[1]} user=${BASH_REMATCH[3]} host=${BASH_REMATCH[6]} admin_db=${BASH_REMATCH[7]:-postgres}
password=${BASH_REMATCH[5]}
database="synthorg_kit_$$_${RANDOM}"
admin_psql() { PGPASSWORD=$password psql "${scheme}${user}@${host}/${admin_db}?sslmode=disable&connect_timeout=5" -X -q -v ON_ERROR_STOP=1 "$@"; }

if ! admin_psql -c "CREATE DATABASE ${database}"; then
  echo "postgres_kit: PostgreSQL at ${host} cannot be used; start it with scripts/services (or set SYNTHORG_TEST_NO_POSTGRES=1 to skip)" >&2
  exit 1
fi
trap 'admin_psql -c "DROP DATABASE IF EXISTS ${database} WITH (FORCE)" || true' EXIT

SYNTHORG_DATABASE_URL="${scheme}${user}:${password}@${host}/${database}" SYNTHORG_POSTGRES_SSL_MODE=disable \
  "$runner" --kind store --plugin "$plugin" "$@"
