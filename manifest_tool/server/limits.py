"""Every bound the server puts on a request, in one place (README: "Server limits").

Each is there so that one client cannot take what others need: memory (body sizes),
the write lock (keys per delete, rows per page), threads and sockets (timeouts).
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_body: int | None = 5 * 1024 * MiB  # one object or part
    json_body: int = 16 * MiB  # node and delete calls, whatever the transfer encoding
    body_idle_s: float = 30.0  # a body that sends nothing this long is dropped (408)
    header_timeout_s: float = 10.0  # a request's headers must be complete this soon
    delete_keys: int = 10_000  # keys in one objects/delete: it holds the write lock
    page_size: int = 10_000  # rows in one listing page
    auth_failures: int = 20  # wrong keys one address may try at once...
    auth_window_s: float = 10.0  # ...earning one more try every window/failures seconds
    upload_threads: int = 16  # uploads being written at once; other calls never wait
    # of those, one user's at once: a user's slow uploads cannot hold every thread
    uploads_per_user: int = 4
    # a batch upload is held in memory whole: these bound it (and a user's slots, how
    # many one user holds at once)
    batch_objects: int = 1000
    batch_bytes: int = 16 * MiB  # the objects' bytes together
