#!/bin/sh
# Entrypoint of Dockerfile.postgres: create the cluster, the account and the
# database on first start (an empty data volume), then run the server in the
# foreground. The password never appears on a command line.
set -eu
: "${POSTGRES_USER:=dagster}" "${POSTGRES_DB:=${POSTGRES_USER}}" "${PGPORT:=5432}" "${POSTGRES_LISTEN:=*}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: set POSTGRES_PASSWORD" >&2
    exit 1
fi
if [ ! -s "${PGDATA}/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD}" > "${pwfile}"
    initdb -D "${PGDATA}" -U "${POSTGRES_USER}" --pwfile="${pwfile}" -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 > /dev/null
    rm -f "${pwfile}"
    echo "host all all all scram-sha-256" >> "${PGDATA}/pg_hba.conf"
    echo "CREATE DATABASE \"${POSTGRES_DB}\";" | postgres --single -D "${PGDATA}" -j postgres > /dev/null
fi
exec postgres -D "${PGDATA}" -p "${PGPORT}" -c listen_addresses="${POSTGRES_LISTEN}"
