#!/bin/sh
# Container entrypoint for every dubbing-assets service and run worker.
#
# 1. DUBBING_KEY may arrive as a Docker secret file (DUBBING_KEY_FILE, e.g.
#    /run/secrets/dubbing_key); it is exported so that the project and the run
#    containers launched by the daemon (docker/dagster.yaml forwards it) see it.
# 2. With DUBBING_INSTANCE_INIT=1 (the daemon service), `dubbing instance init`
#    runs once at start-up, after PostgreSQL answers: folders, keyring, and the
#    `gpu` pool limit (DUBBING_GPU_SLOTS, default 1).
# 3. Then the service's command runs as PID 1's child (tini is PID 1).
set -eu

if [ -z "${DUBBING_KEY:-}" ] && [ -n "${DUBBING_KEY_FILE:-}" ] && [ -r "${DUBBING_KEY_FILE}" ]; then
    DUBBING_KEY="$(tr -d '\r\n' < "${DUBBING_KEY_FILE}")"
    export DUBBING_KEY
fi

if [ "${DUBBING_INSTANCE_INIT:-0}" = "1" ]; then
    tries=0
    until pg_isready -q -h "${DAGSTER_PG_HOST:-postgres}" -p "${DAGSTER_PG_PORT:-5432}" \
            -U "${DAGSTER_PG_USERNAME:-dagster}"; do
        tries=$((tries + 1))
        if [ "${tries}" -ge 60 ]; then
            echo "entrypoint: PostgreSQL at ${DAGSTER_PG_HOST:-postgres} did not answer in 120 s" >&2
            exit 1
        fi
        sleep 2
    done
    dubbing instance init --gpu-slots "${DUBBING_GPU_SLOTS:-1}"
fi

exec "$@"
