"""``/healthz``: 200 while the store answers a trivial query, 503 when it does not.

No key needed: a load balancer or an orchestrator probes it. The answer names no
user, path or error text, so it tells a stranger nothing but "up" or "down".
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..remotes.store import Store
from .context import context, run

log = logging.getLogger("manifest_tool.health")


def probe(store: Store) -> None:
    """One read of the database, through the same connection handlers use."""
    with store.db.read() as conn:
        conn.execute("SELECT 1 FROM nodes LIMIT 1").fetchall()


async def healthz(request: Request) -> Response:
    try:
        await run(probe, context(request).store)
    except Exception as err:  # any failure is "down": the probe must answer, not raise
        log.warning("health check failed: %s", err)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})
