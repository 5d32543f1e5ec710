#!/usr/bin/env bash
# ceph-up.sh — bring up a throw-away single-node Ceph (Pacific 16.2.x, Debian 12
# packages) with one mon, one OSD (memstore by default, or a file-backed
# bluestore), optionally one mgr, and a RADOS Gateway serving S3 on loopback.
# No systemd: daemons are started directly.  Runs as root.
#
# Usage:
#   ceph-up.sh [DIR]            # start; DIR defaults to a new mktemp dir
#   ceph-up.sh --down DIR       # stop daemons started from DIR and remove DIR
#
# Env knobs (all optional):
#   CEPH_OBJECTSTORE=memstore|bluestore  (default memstore)
#   CEPH_OSD_SIZE_MB=1024                (memstore device bytes / bluestore file size)
#   CEPH_WITH_MGR=0|1                    (default 0; needs package ceph-mgr)
#   RGW_PORT, MON_PORT (v2), MON_PORT_V1   (default: free loopback ports chosen at
#                                        start, so two clusters never clash)
#   S3_ACCESS_KEY / S3_SECRET_KEY        (defaults below)
#   CEPH_INSTALL=1                       apt-get install the packages if missing
#   CEPH_NO_RGW=1                        (debug) stop after mon+osd
# Needs: ceph-mon ceph-osd radosgw ceph-common (Debian 12: 16.2.15, ~32 s to
# install on a fresh machine, 64 packages, 61 MB download).
#
# On success prints shell-style lines:  S3_ENDPOINT=...  S3_ACCESS_KEY=...
# S3_SECRET_KEY=...  CEPH_DIR=...  CEPH_CONF=...  and writes the same to $DIR/s3.env.
# memstore keeps every object in RAM: size CEPH_OSD_SIZE_MB for the largest test
# data set (RGW frees deleted data only in its own GC pass, shortened here to 30 s).
set -euo pipefail

log() { printf '[ceph-up %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; [[ -n "${DIR:-}" && -d "${DIR}/log" ]] && tail -n 30 "$DIR"/log/*.log >&2 || true; exit 1; }

stop_all() {   # $1 = DIR ; kill by pid files only (never by name)
    local d=$1 pf pid i
    for pf in "$d"/run/*.pid; do
        [[ -f "$pf" ]] || continue
        pid=$(cat "$pf" 2>/dev/null || true)
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    for i in $(seq 1 15); do          # up to 3 s for a clean exit, then SIGKILL (throw-away data)
        local alive=0
        for pf in "$d"/run/*.pid; do
            [[ -f "$pf" ]] || continue
            pid=$(cat "$pf" 2>/dev/null || true)
            [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ $alive = 0 ]] && break
        sleep 0.2
    done
    for pf in "$d"/run/*.pid; do
        [[ -f "$pf" ]] || continue
        pid=$(cat "$pf" 2>/dev/null || true)
        [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
    done
    for pf in "$d"/run/*.pid; do     # SIGKILL is asynchronous: return once they are gone
        [[ -f "$pf" ]] || continue
        pid=$(cat "$pf" 2>/dev/null || true)
        for i in $(seq 1 50); do
            [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
}

if [[ "${1:-}" == "--down" ]]; then
    D=${2:?usage: $0 --down DIR}
    [[ -f "$D/ceph.conf" ]] || { echo "not a ceph-up dir: $D" >&2; exit 1; }
    stop_all "$D"
    rm -rf -- "$D"
    exit 0
fi

OBJECTSTORE=${CEPH_OBJECTSTORE:-memstore}
OSD_MB=${CEPH_OSD_SIZE_MB:-1024}
WITH_MGR=${CEPH_WITH_MGR:-0}
# Ports the kernel reports free now, distinct from each other (all sockets are held
# until the three are chosen).  A race with another start fails cleanly below.
read -r FREE1 FREE2 FREE3 < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
RGW_PORT=${RGW_PORT:-$FREE1}
MON_PORT=${MON_PORT:-$FREE2}
MON_PORT_V1=${MON_PORT_V1:-$FREE3}
ACCESS_KEY=${S3_ACCESS_KEY:-CEPHTESTACCESSKEY000}
SECRET_KEY=${S3_SECRET_KEY:-cephtestsecretkey0000000000000000000000}

if [[ "${CEPH_INSTALL:-0}" = 1 ]] && ! command -v radosgw >/dev/null; then
    pkgs="ceph-mon ceph-osd radosgw ceph-common"
    [[ "$WITH_MGR" = 1 ]] && pkgs="$pkgs ceph-mgr"
    log "apt-get install $pkgs"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs >/dev/null
fi
for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool; do
    command -v "$b" >/dev/null || die "$b not found (apt-get install ceph-mon ceph-osd radosgw ceph-common)"
done

http_ok() {   # any HTTP answer counts (curl if present, else python3)
    if command -v curl >/dev/null; then
        local code; code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null) && [[ "$code" =~ ^[2-4][0-9][0-9]$ ]]
    else
        python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request, urllib.error
try: urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError: pass
PY
    fi
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$RGW_PORT" "$MON_PORT" "$MON_PORT_V1"; do
    port_busy "$p" && die "127.0.0.1:$p is already in use (set RGW_PORT / MON_PORT / MON_PORT_V1)"
done

DIR=${1:-$(mktemp -d /tmp/ceph-up.XXXXXX)}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
[[ -e "$DIR/ceph.conf" ]] && die "$DIR already holds a cluster; use --down first"
mkdir -p "$DIR"/{run,log,mon,osd,rgw,tmp}
# If anything below fails, do not leave daemons behind.
trap 'rc=$?; if [[ $rc != 0 ]]; then log "start failed (rc=$rc), stopping daemons"; stop_all "$DIR"; fi' EXIT

FSID=$(cat /proc/sys/kernel/random/uuid)
CONF=$DIR/ceph.conf
cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon_initial_members = a
mon_host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_PORT_V1]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $DIR/run
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
log_to_stderr = false
err_to_stderr = true
crash_dir = $DIR/tmp/crash
keyring = /dev/null
# single node, single OSD
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
mon_allow_pool_delete = true
# never let the mon stop itself (or warn) because the host disk is fullish
mon_data_avail_warn = 1
mon_data_avail_crit = 0
ms_bind_ipv6 = false

[mon]
# commit mon map changes faster (default 1 s per proposal: RGW's first start
# issues ~14 pool commands, the first bucket/object 2 more each)
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
mon_data = $DIR/mon/\$cluster-\$id
mon_cluster_log_file = $DIR/log/cluster.log

[mgr]
mgr_data = $DIR/mgr/\$cluster-\$id

[osd]
osd_data = $DIR/osd/\$cluster-\$id
osd_objectstore = $OBJECTSTORE
memstore_device_bytes = $((OSD_MB * 1024 * 1024))
bluestore_block_path = $DIR/osd/\$cluster-\$id/block.file
bluestore_block_create = true
bluestore_block_size = $((OSD_MB * 1024 * 1024))
bluestore_block_db_create = false
bluestore_block_wal_create = false
bluestore_fsck_on_mount = false
osd_memory_target = 939524096
osd_crush_update_on_start = true
osd_max_object_name_len = 460
osd_max_object_namespace_len = 64

[client]
log_file = $DIR/log/\$name.log

[client.rgw.a]
# radosgw's built-in defaults are auth_client_required=cephx and
# ms_mon_client_mode=secure; "secure" cannot be combined with auth "none"
# (the mon connection then fails with get_initial_auth_request returned -13)
ms_mon_client_mode = crc
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_data = $DIR/rgw
rgw_thread_pool_size = 64
rgw_dns_name = localhost
# throw-away data: free deleted objects' space soon, not after the default 2 h
rgw_gc_obj_min_wait = 30
rgw_gc_processor_period = 30
EOF
export CEPH_CONF=$CONF

# 1. monitor
log "mon mkfs"
monmaptool --create --clobber --fsid "$FSID" \
    --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_PORT_V1]" "$DIR/tmp/monmap" >/dev/null
mkdir -p "$DIR/mon/ceph-a"
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/tmp/monmap" || die "mon mkfs failed"
log "mon start"
ceph-mon -c "$CONF" -i a || die "mon start failed"
for i in $(seq 1 60); do
    ceph -c "$CONF" --connect-timeout 5 mon stat >/dev/null 2>&1 && break
    [[ $i = 60 ]] && die "mon did not come up"
    sleep 0.5
done

# 2. optional manager (not needed for RGW)
if [[ "$WITH_MGR" = 1 ]]; then
    command -v ceph-mgr >/dev/null || die "ceph-mgr not installed"
    log "mgr start"
    mkdir -p "$DIR/mgr/ceph-x"
    ceph-mgr -c "$CONF" -i x || die "mgr start failed"
fi

# 3. one OSD
log "osd mkfs ($OBJECTSTORE, ${OSD_MB} MiB)"
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(ceph -c "$CONF" osd new "$OSD_UUID")
mkdir -p "$DIR/osd/ceph-$OSD_ID"
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd-mkfs.log" 2>&1 \
    || die "osd mkfs failed: $(tail -5 "$DIR/log/osd-mkfs.log")"
log "osd start"
ceph-osd -c "$CONF" -i "$OSD_ID" || die "osd start failed"
for i in $(seq 1 120); do
    ceph -c "$CONF" osd dump 2>/dev/null | grep -q "^osd.$OSD_ID up" && break
    [[ $i = 120 ]] && die "osd did not come up"
    sleep 0.5
done

# 4. RADOS gateway (creates its pools on first start)
log "rgw start on 127.0.0.1:$RGW_PORT"
# (debug aid) CEPH_NO_RGW=1 leaves mon+osd running and stops here
[[ "${CEPH_NO_RGW:-0}" = 1 ]] && { trap - EXIT; log "CEPH_NO_RGW=1: not starting rgw"; exit 0; }
radosgw -c "$CONF" -n client.rgw.a || die "radosgw start failed"
for i in $(seq 1 240); do
    # anonymous ListBuckets answers 200 with an empty ListAllMyBucketsResult
    http_ok "http://127.0.0.1:$RGW_PORT/" && break
    [[ $i = 240 ]] && die "rgw did not answer on port $RGW_PORT"
    if [[ -f "$DIR/run/client.rgw.a.pid" ]] && ! kill -0 "$(cat "$DIR/run/client.rgw.a.pid")" 2>/dev/null; then
        die "radosgw exited (port $RGW_PORT busy?)"
    fi
    sleep 0.5
done

# 5. an S3 user with fixed keys
log "create S3 user"
radosgw-admin -c "$CONF" user create --uid=test --display-name="test user" \
    --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" >"$DIR/tmp/user.json" 2>>"$DIR/log/radosgw-admin.log" \
    || die "radosgw-admin user create failed"

cat >"$DIR/s3.env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
S3_ACCESS_KEY=$ACCESS_KEY
S3_SECRET_KEY=$SECRET_KEY
CEPH_DIR=$DIR
CEPH_CONF=$CONF
EOF
cat "$DIR/s3.env"
log "ready (stop with: $0 --down $DIR)"
