#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for the tests, installing Debian's package when
# missing. Prints `export CIRCUITS_TEST_PG_URL=...` for the caller to eval. The data directory lives
# under /tmp and is removed by `.ci/postgres.sh stop`.
set -euo pipefail
PORT="${CIRCUITS_PG_PORT:-54329}"
DATA="${CIRCUITS_PG_DATA:-/tmp/circuits-ci-pg}"

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

if [ "${1:-start}" = "stop" ]; then
  BIN="$(find_bin)" || exit 0
  [ -d "$DATA" ] && runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DATA"
  exit 0
fi

if ! BIN="$(find_bin)"; then
  echo "installing postgresql (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
  BIN="$(find_bin)"
fi

if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); else AS=(); fi
if [ -d "$DATA" ]; then "${AS[@]}" "$BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$DATA"; fi
mkdir -p "$DATA" && [ "$(id -u)" = 0 ] && chown postgres: "$DATA"
"${AS[@]}" "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
  -o "-h 127.0.0.1 -p $PORT -k $DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >&2
"$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qc "create database circuits_test" >&2
echo "export CIRCUITS_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/circuits_test"
