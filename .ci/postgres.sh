#!/usr/bin/env bash
# Start a PostgreSQL server on 127.0.0.1 for the tuning tests (tests/test_tune.py) and create the
# database and user they use. Installs Debian's `postgresql` package if it is missing (needs root).
#
# stdout: one line `export BENCH_TEST_POSTGRES_URL=postgresql+psycopg2://bench:bench@127.0.0.1:PORT/bench_test`
# (everything else goes to stderr), so a CI script can do:   eval "$(.ci/postgres.sh)"
# Idempotent: an already running cluster, user or database is reused. Env: BENCH_PG_PORT (default 5432).
# Exits non-zero (and prints no URL) when the server cannot be installed, started or reached.
set -euo pipefail

PORT="${BENCH_PG_PORT:-5432}"
PG_USER=bench
PG_PASS=bench
PG_DB=bench_test

log() { echo "postgres.sh: $*" >&2; }

if ! command -v pg_lsclusters >/dev/null 2>&1; then
    log "installing postgresql (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION main"; then
    log "creating cluster $VERSION/main on port $PORT"
    pg_createcluster "$VERSION" main --port "$PORT" >&2
fi
CLUSTER_PORT="$(pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $3}')"
if [ "$CLUSTER_PORT" != "$PORT" ]; then
    log "cluster $VERSION/main uses port $CLUSTER_PORT; using that"
    PORT="$CLUSTER_PORT"
fi
# Listen on loopback only (Debian's default is localhost; make it explicit).
CONF_D="/etc/postgresql/$VERSION/main/conf.d"
mkdir -p "$CONF_D"
echo "listen_addresses = '127.0.0.1'" > "$CONF_D/bench-loopback.conf"
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $4}' | grep -q online; then
    log "starting cluster $VERSION/main"
    pg_ctlcluster "$VERSION" main start >&2
fi

psql_admin() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }
ready=0
for _ in $(seq 1 30); do
    if psql_admin -c 'select 1' >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 1
done
if [ "$ready" != 1 ]; then
    log "error: the server on port $PORT did not answer within 30 s"
    exit 1
fi
if [ "$(psql_admin -c "select 1 from pg_roles where rolname='$PG_USER'")" != "1" ]; then
    log "creating user $PG_USER"
    psql_admin -c "create role $PG_USER login password '$PG_PASS'" >&2
fi
if [ "$(psql_admin -c "select 1 from pg_database where datname='$PG_DB'")" != "1" ]; then
    log "creating database $PG_DB"
    psql_admin -c "create database $PG_DB owner $PG_USER" >&2
fi

URL="postgresql+psycopg2://$PG_USER:$PG_PASS@127.0.0.1:$PORT/$PG_DB"
PGPASSWORD="$PG_PASS" psql -h 127.0.0.1 -p "$PORT" -U "$PG_USER" -d "$PG_DB" -qtA -c 'select 1' >/dev/null
log "ready: $URL"
echo "export BENCH_TEST_POSTGRES_URL=$URL"
