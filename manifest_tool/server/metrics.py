"""``/metrics``: the server's counters in Prometheus' text exposition format.

Written by hand rather than with prometheus_client: a few counters and one
histogram are short, and the server gains no dependency. Requests are counted by
route *template* (``/apis/v1/nodes``), never by path, so user and node names stay
out of the scrape and the series stay few.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from ..remotes.store import Store
from .context import context, run

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: a small part takes milliseconds, a large object on a slow link minutes
UPLOAD_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0)
# (method, route template) of the calls that write object bytes
UPLOADS = frozenset(
    {("POST", "/apis/v1/objects"), ("PUT", "/apis/v1/objects/multipart/{upload_id}")}
)
ROUTE_KEY = "manifest_tool.route"  # set in the scope by the route that answered
UNMATCHED = "unmatched"


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def lines(self, name: str) -> list[str]:
        out, seen = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            seen += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{le="{le}"}} {seen}')
        return [*out, f"{name}_sum {self.total!r}", f"{name}_count {seen}"]


@dataclass
class Metrics:
    """Counters touched only on the event loop (by the access log), so no lock."""

    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    uploads: Histogram = field(default_factory=lambda: Histogram(UPLOAD_BUCKETS))
    # the store's size, and when it was read: /metrics needs no key, and each read
    # scans the objects table, so scrapes share one read per STORE_SIZE_TTL_S
    size: tuple[int, int, int] = (0, 0, 0)
    size_read_at: float = float("-inf")

    def record(
        self, method: str, route: str, status: int, sent: int, received: int, secs: float
    ) -> None:
        self.requests[(method, route, status)] += 1
        self.bytes_in += received
        self.bytes_out += sent
        if (method, route) in UPLOADS and status < 400:
            self.uploads.observe(secs)

    def exposition(self, objects: int, object_bytes: int, blob_bytes: int) -> str:
        lines = [
            "# HELP manifest_tool_requests_total HTTP requests by method, route and status.",
            "# TYPE manifest_tool_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            labels = f'method="{_label(method)}",route="{_label(route)}",status="{status}"'
            lines.append(f"manifest_tool_requests_total{{{labels}}} {n}")
        lines += _single("request_bytes_total", "counter", "Body bytes read.", self.bytes_in)
        lines += _single("response_bytes_total", "counter", "Body bytes sent.", self.bytes_out)
        lines += [
            "# HELP manifest_tool_upload_seconds Time to answer a good object or part upload.",
            "# TYPE manifest_tool_upload_seconds histogram",
            *self.uploads.lines("manifest_tool_upload_seconds"),
        ]
        lines += _single("store_objects", "gauge", "Objects in the store.", objects)
        lines += _single("store_object_bytes", "gauge", "Bytes of all objects.", object_bytes)
        lines += _single("store_blob_bytes", "gauge", "Bytes of distinct blobs kept.", blob_bytes)
        return "\n".join(lines) + "\n"


def _single(name: str, kind: str, help_text: str, value: int) -> list[str]:
    full = f"manifest_tool_{name}"
    return [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}", f"{full} {value}"]


def _label(value: str) -> str:
    """A label value escaped as the format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def store_size(store: Store) -> tuple[int, int, int]:
    """(objects, their bytes, bytes of distinct blobs): one read of the objects table."""
    with store.db.read() as conn:
        objects, object_bytes = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects"
        ).fetchone()
        (blob_bytes,) = conn.execute(
            "SELECT COALESCE(SUM(size), 0) FROM (SELECT blob, MAX(size) AS size FROM objects"
            " GROUP BY blob) AS distinct_blobs"
        ).fetchone()
    return int(objects), int(object_bytes), int(blob_bytes)


def metrics_of(request: Request) -> Metrics:
    found: Metrics = request.app.state.metrics
    return found


STORE_SIZE_TTL_S = 30.0


async def metrics(request: Request) -> Response:
    found = metrics_of(request)
    if time.monotonic() - found.size_read_at > STORE_SIZE_TTL_S:
        found.size = await run(store_size, context(request).store)
        found.size_read_at = time.monotonic()
    return Response(found.exposition(*found.size), media_type=CONTENT_TYPE)
