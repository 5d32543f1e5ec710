# Sourced by .ci/run (and by tests/test_ci_engines.py): the test engines of the
# scale-out suite, PostgreSQL and Ceph RGW, installed when missing, started on free
# loopback ports in one temp dir, and stopped again.  Runs as root.
#   ci_install_missing   apt-get only the packages that are not there yet
#   engines_up           start both; exports MT_TEST_PG_DSN, MT_TEST_S3_ENDPOINT, AWS_*
#   engines_down         stop both and remove the temp dir (safe after a partial start)

ENGINES_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)

ci_missing_engines() {
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || echo postgresql
    local pair
    for pair in ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw ceph:ceph-common; do
        command -v "${pair%%:*}" >/dev/null || echo "${pair#*:}"
    done
}

ci_install_missing() {
    local engines chromium=""
    engines=$(ci_missing_engines | tr '\n' ' ')
    command -v chromium >/dev/null || chromium=chromium
    [[ -z "${engines// /}" && -z "$chromium" ]] && return 0
    echo "[ci] apt-get install ${engines}${chromium}" >&2
    apt-get update -qq
    if [[ -n "$chromium" ]]; then  # with its recommends (fonts), as the UI tests had it
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    if [[ -n "${engines// /}" ]]; then
        # shellcheck disable=SC2086  # one word per package
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $engines >/dev/null
    fi
}

engines_up() {
    ENGINES_DIR=$(mktemp -d /tmp/mt-engines.XXXXXX)
    chmod 755 "$ENGINES_DIR"  # the postgres user must reach its data dir below
    export ENGINES_DIR
    "$ENGINES_TOOLS/pg-up.sh" "$ENGINES_DIR/pg" >/dev/null
    # memstore holds objects in RAM until RGW's GC frees them: room for the suite.
    CEPH_OSD_SIZE_MB=${CEPH_OSD_SIZE_MB:-4096} "$ENGINES_TOOLS/ceph-up.sh" "$ENGINES_DIR/ceph" >/dev/null
    local PG_DSN S3_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY
    PG_DSN=$(sed -n 's/^PG_DSN=//p' "$ENGINES_DIR/pg/pg.env")
    S3_ENDPOINT=$(sed -n 's/^S3_ENDPOINT=//p' "$ENGINES_DIR/ceph/s3.env")
    S3_ACCESS_KEY=$(sed -n 's/^S3_ACCESS_KEY=//p' "$ENGINES_DIR/ceph/s3.env")
    S3_SECRET_KEY=$(sed -n 's/^S3_SECRET_KEY=//p' "$ENGINES_DIR/ceph/s3.env")
    export MT_TEST_PG_DSN=$PG_DSN
    export MT_TEST_S3_ENDPOINT=$S3_ENDPOINT
    export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
    export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
    export AWS_DEFAULT_REGION=us-east-1
    echo "[ci] engines up: PostgreSQL $MT_TEST_PG_DSN, RGW $MT_TEST_S3_ENDPOINT" >&2
}

engines_down() {
    [[ -n "${ENGINES_DIR:-}" && -d "$ENGINES_DIR" ]] || return 0
    local rc=0
    if [[ -f "$ENGINES_DIR/ceph/ceph.conf" ]]; then
        "$ENGINES_TOOLS/ceph-up.sh" --down "$ENGINES_DIR/ceph" || rc=1
    fi
    if [[ -f "$ENGINES_DIR/pg/data/PG_VERSION" ]]; then
        "$ENGINES_TOOLS/pg-up.sh" --down "$ENGINES_DIR/pg" || rc=1
    fi
    [[ $rc = 0 ]] || { echo "[ci] could not stop the engines in $ENGINES_DIR" >&2; return 1; }
    rm -rf -- "$ENGINES_DIR"
    echo "[ci] engines stopped" >&2
}
