"""The engine start/stop of .ci/run, on its own: PostgreSQL and RGW come up on free
ports (not the development engines' fixed ones), answer, and are gone, with their
temp dir, when the run fails."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV_PORTS = {54329, 7480}  # the shared development engines' ports
CEPH_PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"

RUN = r"""
set -euo pipefail
source .ci/engines.sh
trap engines_down EXIT
engines_up
{ echo "$ENGINES_DIR"; echo "$MT_TEST_PG_DSN"; echo "$MT_TEST_S3_ENDPOINT";
  echo "$AWS_ACCESS_KEY_ID"; } >"$OUT/env"
{ cat "$ENGINES_DIR"/ceph/run/*.pid; head -1 "$ENGINES_DIR/pg/data/postmaster.pid"; } >"$OUT/pids"
psql "$MT_TEST_PG_DSN" -tAc 'select 41 + 1' >"$OUT/psql"
python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).status)' \
    "$MT_TEST_S3_ENDPOINT/" >"$OUT/rgw"
exit 3  # as a failing test run would: the trap must still stop everything
"""


def _engines_installable() -> str | None:
    """Why this machine cannot run the engines, or None."""
    if os.geteuid() != 0:
        return "starting PostgreSQL and Ceph needs root"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        return "PostgreSQL is not installed (apt-get install postgresql)"
    for tool in ("ceph-mon", "ceph-osd", "radosgw", "ceph", "psql"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {CEPH_PACKAGES})"
    return None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ci_engines_start_on_free_ports_and_stop_on_failure(tmp_path: Path) -> None:
    reason = _engines_installable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the engines: {reason}")
        pytest.skip(reason)
    run = subprocess.run(
        ["bash", "-c", RUN],
        cwd=ROOT,
        env={**os.environ, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 3, run.stderr
    engines_dir, pg_dsn, s3_endpoint, access_key = (tmp_path / "env").read_text().split()
    pg_port = int(pg_dsn.rsplit(":", 1)[1].split("/")[0])
    rgw_port = int(s3_endpoint.rsplit(":", 1)[1])
    assert pg_dsn.startswith("postgresql://postgres@127.0.0.1:")
    assert s3_endpoint.startswith("http://127.0.0.1:") and access_key
    assert not {pg_port, rgw_port} & DEV_PORTS and pg_port != rgw_port
    assert (tmp_path / "psql").read_text().strip() == "42"
    assert (tmp_path / "rgw").read_text().strip() == "200"
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 4  # mon, osd, rgw, postmaster
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "an engine outlived the run"
    assert not _port_open(pg_port) and not _port_open(rgw_port)
    assert not Path(engines_dir).exists()
    assert "engines stopped" in run.stderr
