#!/usr/bin/env bash
# pg-up.sh — a throw-away PostgreSQL (Debian package postgresql, v15) in a temp dir,
# run as root through the 'postgres' system user; no systemd, no pg_createcluster.
#   pg-up.sh [DIR]        start; prints PG_DSN=... PG_PORT=... PG_DIR=... (also in DIR/pg.env)
#   pg-up.sh --down DIR   stop (immediate) and remove DIR
# Env: PG_PORT (default: a free loopback port chosen at start, so two runs never
# clash), PG_INSTALL=1 to apt-get install postgresql when it is missing.
set -euo pipefail
log() { printf '[pg-up %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [[ "${1:-}" == "--down" ]]; then
    D=${2:?usage: $0 --down DIR}
    [[ -f "$D/data/PG_VERSION" ]] || die "not a pg-up dir: $D"
    BIN=$(pg_bin)
    if [[ -f "$D/data/postmaster.pid" ]]; then
        PID=$(head -1 "$D/data/postmaster.pid")
        runuser -u postgres -- "$BIN/pg_ctl" -D "$D/data" -m immediate -w -t 30 stop >/dev/null \
            || die "could not stop the server of $D (left in place)"
        for _ in $(seq 1 50); do   # pg_ctl returns when the pid file goes, maybe before the process
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -rf -- "$D"
    exit 0
fi

if [[ -z "$(pg_bin)" ]]; then
    [[ "${PG_INSTALL:-0}" = 1 ]] || die "postgresql is not installed (apt-get install postgresql)"
    log "apt-get install postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null
fi
BIN=$(pg_bin)
[[ -n "$BIN" ]] || die "no /usr/lib/postgresql/*/bin after install"

# A port the kernel reports free now; a clash with a concurrent start is retried below.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

DIR=${1:-$(mktemp -d /tmp/pg-up.XXXXXX)}
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
[[ -e "$DIR/data/PG_VERSION" ]] && die "$DIR already holds a cluster; use --down first"
chmod 755 "$DIR"                       # mktemp makes 700; postgres must reach it
mkdir -p "$DIR/data" "$DIR/sock" "$DIR/log"
chown postgres:postgres "$DIR/data" "$DIR/sock" "$DIR/log"
runuser -u postgres -- test -w "$DIR/data" \
    || die "user postgres cannot write $DIR/data (a parent directory is not searchable)"

log "initdb"
runuser -u postgres -- "$BIN/initdb" -D "$DIR/data" -U postgres -A trust \
    -E UTF8 --locale=C.UTF-8 --no-sync --no-instructions >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }

# Throw-away data: durability settings off (a test engine, never a real deployment).
started=0
for attempt in 1 2 3; do
    PORT=${PG_PORT:-$(free_port)}
    log "start on 127.0.0.1:$PORT (socket dir $DIR/sock)"
    if runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log/server.log" -w -t 30 \
        -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DIR/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null; then
        started=1; break
    fi
    [[ -n "${PG_PORT:-}" ]] && break  # a fixed port that is busy stays busy
done
[[ $started = 1 ]] || { tail -20 "$DIR/log/server.log" >&2; die "postgres did not start"; }

cat >"$DIR/pg.env" <<ENV
PG_DSN=postgresql://postgres@127.0.0.1:$PORT/postgres
PG_SOCKET_DSN='postgresql://postgres@/postgres?host=$DIR/sock&port=$PORT'
PG_PORT=$PORT
PG_DIR=$DIR
ENV
cat "$DIR/pg.env"
log "ready (stop with: $0 --down $DIR)"
