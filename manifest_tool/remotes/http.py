"""The ``http:``/``https:`` remote: docs/protocol.md spoken over ``requests``.

One session shared by the upload threads, one retry helper, one error mapper, and a
timeout on every call. Bodies stream in 1 MiB blocks both ways, so memory stays flat
whatever the object's size.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from ..errors import (
    ChecksumMismatch,
    InvalidInput,
    KeyMissing,
    KeyNotFound,
    ManifestToolError,
    NameConflict,
    NodeNotFound,
    NotAFolder,
    PermissionDenied,
    RemoteError,
    RevisionMismatch,
)
from .base import STORAGE_TYPES, ContentWrites, Lineage, Node, ObjectInfo, Upload
from .formbody import FormBody, batch_form, file_size

T = TypeVar("T")
BLOCK = 1024 * 1024  # download write size


class Unreachable(RemoteError, requests.ConnectionError):
    """No connection to the server: T9k's SDK lets requests.ConnectionError through,
    so callers written for it catch ours. (Here, not in errors.py, so that importing
    errors does not import requests.)"""


MiB = 1024 * 1024
MULTIPART_ABOVE = 100 * MiB
PAGE = 1000  # rows per listing page, as T9k clients ask
BIG_PAGE = 10_000  # what our server allows: a tenth of the requests and of its scans
OBJECTS_LS = "/apis/v1/objects/ls"
DELETE_BATCH = 1000
TIMEOUT = (10.0, 120.0)  # (connect, read) seconds
FINISH_TIMEOUT = (10.0, 900.0)  # the server re-reads and hashes every part
RETRIES = 4
BACKOFF_S = 0.25
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
MISSING_RE = re.compile(r"\[([^\[\]]*)\]\s*$")
BATCH_INFO = 1000  # nodes per batch read: the server's cap
FULL = 507  # a full disk stays full: reported at once, not retried like other 5xx


class _Transient(Exception):
    """A 429 or 5xx answer, worth another try."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response


def part_size(size: int) -> int:
    """PROTOCOL: parts of floor(sqrt(size in MiB)) MiB, at least 5 MiB."""
    return max(5, math.isqrt(size // MiB)) * MiB


def content_md5(md5_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(md5_hex)).decode()


class HttpRemote:
    batch_route = "/apis/v1/objects/batch"
    batch_count = 1000  # objects per batch request: our server's cap (docs/protocol.md)

    def __init__(
        self,
        url: str,
        api_key: str | None,
        send_apikey_query: bool | None = None,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._user: str | None = None
        self._batch_info = True  # until the server shows it lacks the batch read
        self._batch_put = True  # until the server shows it lacks the batch upload
        self._big_pages = True  # until the server refuses listing pages of BIG_PAGE
        self.writes = ContentWrites()
        # Our server takes one streamed put of any size (docs/protocol.md); it is known
        # by its batch node read, which a plan makes before anything is uploaded. Big
        # files then cost the server one MD5 pass, not one per part and one whole.
        self._one_put = False
        # Names this (server, key) pair without holding the key: lets a caller cache
        # whoami's answer so that a no-op plan costs only its per-artifact reads.
        self.identity = hashlib.sha256(f"{self.url}\0{api_key or ''}".encode()).hexdigest()
        self.session = requests.Session()
        self.session.trust_env = any(os.environ.get(v) for v in PROXY_VARS)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
            if send_apikey_query is None:
                send_apikey_query = os.environ.get("MANIFEST_TOOL_APIKEY_QUERY") == "1"
            if send_apikey_query:
                self.session.params = {"apikey": api_key}

    # -- transport -------------------------------------------------------------------
    def _call(
        self, method: str, path: str, what: str, idempotent: bool = True, **kwargs: Any
    ) -> requests.Response:
        """One API call, retried when that is safe, its errors mapped to ours."""
        kwargs.setdefault("timeout", self.timeout)

        def attempt() -> requests.Response:
            resp = self.session.request(method, self.url + path, allow_redirects=False, **kwargs)
            if resp.status_code == 429 or (resp.status_code >= 500 and resp.status_code != FULL):
                raise _Transient(resp)
            return resp

        try:
            resp = with_retries(attempt, idempotent)
        except _Transient as err:
            raise self._error(err.response, what) from None
        except requests.exceptions.SSLError:
            raise Unreachable(self._tls_message(what)) from None
        except requests.ConnectionError as err:
            raise Unreachable(
                f"cannot reach {self.url}: {type(err).__name__} while {what} "
                "(is the server running? check --remote)"
            ) from None
        except requests.RequestException as err:
            raise RemoteError(
                f"cannot reach {self.url}: {type(err).__name__} while {what} "
                "(is the server running? check --remote)"
            ) from None
        if resp.status_code >= 300:
            raise self._error(resp, what)
        return resp

    def _tls_message(self, what: str) -> str:
        # The usual cause is https:// in front of a plain-http server (TLS "wrong version").
        plain = "http://" + self.url.removeprefix("https://")
        return (
            f"cannot reach {self.url}: TLS handshake failed while {what}; if the server "
            f"speaks plain HTTP, use {plain}"
        )

    def _json(
        self, method: str, path: str, what: str, idempotent: bool = True, **kwargs: Any
    ) -> Any:
        resp = self._call(method, path, what, idempotent, **kwargs)
        try:
            return resp.json()
        except ValueError:
            raise RemoteError(f"{self.url} answered {what} with something not JSON") from None

    def _error(self, resp: requests.Response, what: str) -> ManifestToolError:
        """The typed error for a failed answer (the one place that reads them)."""
        return map_error(resp, self.url, what, self._user)

    # -- identity and nodes -------------------------------------------------------------
    def assume_user(self, user: str) -> None:
        """Take ``user`` as whoami's answer (remembered from an earlier run)."""
        self._user = user

    def whoami(self) -> str:
        if self._user is None:
            data = self._json("GET", "/oauth2/userinfo", "asking who the key belongs to")
            self._user = str(data["preferred_username"])
        return self._user

    def node_info(self, path: str) -> Node | None:
        try:
            data = self._json(
                "GET", "/apis/v1/nodes/info", f"reading node {path}", params={"node": path}
            )
        except NodeNotFound:
            return None
        return Node.from_api(data)

    def node_infos(self, paths: Sequence[str]) -> list[Node | None]:
        """Many nodes in one request per 1,000 (an extension); one request each from a
        server without it."""
        if self._batch_info:
            try:
                return self._node_infos(paths)
            except RouteMissing:
                self._batch_info = False  # an older server: ask one by one from now on
        return [self.node_info(p) for p in paths]

    def _node_infos(self, paths: Sequence[str]) -> list[Node | None]:
        out: list[Node | None] = []
        for start in range(0, len(paths), BATCH_INFO):
            chunk = list(paths[start : start + BATCH_INFO])
            data = self._json(
                "POST", "/apis/v1/nodes/infos", f"reading {len(chunk)} nodes",
                json={"nodes": chunk},
            )  # fmt: skip
            rows = data.get("data") if isinstance(data, dict) else None
            if not isinstance(rows, list) or len(rows) != len(chunk):
                raise RemoteError(f"{self.url} answered a batch node read with a wrong shape")
            out += [Node.from_api(r) if isinstance(r, dict) else None for r in rows]
        self._one_put = True
        return out

    def list_nodes(self, parent: str) -> list[Node]:
        rows = self._pages("/apis/v1/nodes", {"parent": parent}, f"listing {parent}")
        return [Node.from_api(r) for r in rows]

    def create_node(
        self,
        parent: str,
        name: str,
        type: str,
        labels: Sequence[str] = (),
        description: str = "",
        extra: str = "{}",
    ) -> str:
        body = {
            "parent": parent,
            "name": name,
            "labels": list(labels),
            "type": type,
            "storageType": STORAGE_TYPES.get(type, 0),
            "description": description,
            "extra": extra,
        }
        data = self._json(
            "POST", "/apis/v1/nodes", f"creating {parent}/{name}", idempotent=False, json=body
        )
        return str(data["id"])

    def update_node(self, path: str, **fields: Any) -> Node:
        body = {"node": path, **fields}
        if "labels" in body:
            body["labels"] = list(body["labels"])
        return Node.from_api(self._json("PUT", "/apis/v1/nodes", f"updating {path}", json=body))

    def set_if_unchanged(self, path: str, revision: int, **fields: Any) -> Node:
        """The digest compare-and-set (an extension: only for a server that reports
        ``objectsRevision``, as another server would ignore the condition)."""
        return self.update_node(path, ifObjectsRevision=revision, **fields)

    def delete_node(self, path: str) -> None:
        self._call("DELETE", "/apis/v1/nodes", f"deleting {path}", json={"node": path})

    def lineage(self, node: str) -> Lineage:
        """The graphs API keys a node by id, so a path is looked up first."""
        info = self.node_info(node)
        if info is None:
            raise NodeNotFound(node)
        what = f"reading the lineage of {info.path}"
        try:
            data = self._json("GET", "/apis/v1/graphs", what, params={"current": info.id})
        except RemoteError as err:
            raise _no_graphs(err, self.url) from None
        return Lineage.from_api(info, data)

    def add_edges(self, pairs: Sequence[tuple[str, str]]) -> None:
        body = {"graphs": [{"from": src, "to": dst} for src, dst in pairs]}
        # Adding an edge twice changes nothing, so a retry is safe.
        self._call("POST", "/apis/v1/graphs", "linking runs and artifacts", json=body)

    def _pages(
        self, path: str, params: dict[str, str], what: str, size: int = PAGE
    ) -> Iterator[dict[str, Any]]:
        """Every row of a paged listing, a page at a time (never all pages' JSON at once).

        A server may cap pages below ``size``: a short first page with more to come
        says so, and the next pages are asked in that size, so that page N still
        starts where page N-1 ended whichever size the server counts offsets in.
        """
        page, seen = 1, 0
        while True:
            data = self._json("GET", path, what, params={**params, "page": page, "size": size})
            batch = data.get("data") or []
            yield from batch
            seen += len(batch)
            total = int((data.get("pagination") or {}).get("total", seen))
            if not batch or seen >= total:
                return
            if page == 1 and len(batch) < size:
                size = len(batch)
            page += 1

    # -- objects ------------------------------------------------------------------------
    def list_objects(self, node_path: str) -> list[ObjectInfo]:
        return list(self.iter_objects(node_path))

    def iter_objects(self, node_path: str) -> Iterator[ObjectInfo]:
        """The node's objects, a page at a time.

        Our server pages up to 10,000 rows (each page costs it a scan to its offset,
        so fewer pages are much cheaper); a server that refuses that size (400) is
        asked T9k's 1,000, from then on.
        """
        what, params = f"listing {node_path}", {"path": node_path}
        if self._big_pages:
            rows = self._pages(OBJECTS_LS, params, what, BIG_PAGE)
            try:
                first = next(rows, None)  # the first page shows whether the size is taken
            except InvalidInput:
                self._big_pages = False
            else:
                if first is not None:
                    yield from _objects(chain([first], rows))
                return
        yield from _objects(self._pages(OBJECTS_LS, params, what))

    def put_object(self, node_path: str, upload: Upload) -> ObjectInfo:
        if upload.data is None and file_size(upload.source) > MULTIPART_ABOVE:
            if not self._one_put:
                return self._put_multipart(node_path, upload)
            try:
                return self._put_form(node_path, upload)
            except (TooLarge, Unreachable):  # a proxy in front caps bodies: parts from now on
                self._one_put = False
                return self._put_multipart(node_path, upload)
        return self._put_form(node_path, upload)

    def _put_form(self, node_path: str, upload: Upload) -> ObjectInfo:
        target = f"{node_path}/{upload.key}"
        data = self._send_form(
            "POST",
            "/apis/v1/objects",
            f"uploading {target}",
            FormBody(upload.key, upload.source, upload.data, on_bytes=upload.on_bytes),
            {"path": target},
            upload.md5,
        )
        self.writes.add(node_path, [upload.key])
        return ObjectInfo.from_api(data)

    def put_objects(self, node_path: str, uploads: Sequence[Upload]) -> list[ObjectInfo]:
        """Many small objects in one request (an extension); one request each to a
        server without it."""
        if self._batch_put:
            try:
                return self._put_batch(node_path, uploads)
            except RouteMissing:
                self._batch_put = False  # an older server: one by one from now on
            except InvalidInput:
                # Another server may route the call elsewhere and refuse the form. One
                # by one, a bad object fails with its own error; if none does, the
                # server lacks the call.
                infos = [self.put_object(node_path, u) for u in uploads]
                self._batch_put = False
                return infos
        return [self.put_object(node_path, u) for u in uploads]

    def _put_batch(self, node_path: str, uploads: Sequence[Upload]) -> list[ObjectInfo]:
        """One batch; a server with smaller batch limits (413) gets it in halves."""
        content_type, body = batch_form(uploads)
        what = f"uploading {len(uploads)} objects to {node_path}"
        try:  # puts are idempotent by key: retried like a single put
            data = self._json(
                "POST", self.batch_route, what, params={"path": node_path},
                headers={"Content-Type": content_type}, data=body,
            )  # fmt: skip
        except TooLarge:
            if len(uploads) == 1:
                return [self.put_object(node_path, uploads[0])]
            half = len(uploads) // 2
            del body
            return [
                *self._put_batch(node_path, uploads[:half]),
                *self._put_batch(node_path, uploads[half:]),
            ]
        infos = self._batch_results(node_path, uploads, data)
        self.writes.add(node_path, [u.key for u in uploads])
        return infos

    def _batch_results(
        self, node_path: str, uploads: Sequence[Upload], data: Any
    ) -> list[ObjectInfo]:
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list) or len(rows) != len(uploads):
            raise RemoteError(f"{self.url} answered a batch upload with a wrong shape")
        for upload, row in zip(uploads, rows, strict=True):
            error = row.get("error") if isinstance(row, dict) else "no result"
            if error:
                what = f"uploading {node_path}/{upload.key} on {self.url}"
                if str(error).startswith("checksum mismatch"):
                    raise ChecksumMismatch(f"{error} ({what})")
                raise RemoteError(f"{self.url} refused {what}: {error}")
        for upload in uploads:
            if upload.on_bytes is not None:
                upload.on_bytes(upload.size)
        return [ObjectInfo.from_api(r) for r in rows]

    def _send_form(
        self,
        method: str,
        path: str,
        what: str,
        body: FormBody,
        params: dict[str, Any],
        md5: str | None = None,
    ) -> Any:
        """Send a streamed form; puts are idempotent by key, so they are retried."""
        headers = {"Content-Type": body.content_type}
        if md5:
            headers["Content-MD5"] = content_md5(md5)
        return self._json(method, path, what, params=params, headers=headers, data=body)

    def _put_multipart(self, node_path: str, upload: Upload) -> ObjectInfo:
        target = f"{node_path}/{upload.key}"
        params = {"path": target}
        start = self._json(
            "POST", "/apis/v1/objects/multipart", f"starting upload of {target}", params=params
        )
        upload_id = str(start["uploadId"])
        route = f"/apis/v1/objects/multipart/{upload_id}"
        try:
            parts = self._put_parts(route, upload, target)
            data = self._json(
                "POST",
                route,
                f"finishing upload of {target}",
                params=params,
                json={"parts": parts},
                headers={"Content-MD5": content_md5(upload.md5)},
                timeout=FINISH_TIMEOUT,
            )
        except BaseException:
            self._abort(route, params)
            raise
        self.writes.add(node_path, [upload.key])
        return ObjectInfo.from_api(data)

    def _put_parts(self, route: str, upload: Upload, target: str) -> list[dict[str, Any]]:
        size = file_size(upload.source)
        step = part_size(size)
        parts = []
        for number, offset in enumerate(range(0, size, step), start=1):
            length = min(step, size - offset)
            body = FormBody(upload.key, upload.source, None, offset, length, upload.on_bytes)
            data = self._send_form(
                "PUT",
                route,
                f"uploading part {number} of {target}",
                body,
                {"path": target, "partNumber": number},
            )
            parts.append({"etag": str(data["eTag"]), "partNumber": number})
        return parts

    def _abort(self, route: str, params: dict[str, str]) -> None:
        # The server sweeps abandoned uploads; the first error is the one to report.
        with contextlib.suppress(ManifestToolError):
            self._call("DELETE", route, "aborting an upload", params=params)

    def get_object(self, node_path: str, key: str, dest: Path) -> None:
        target = f"{node_path}/{key}"
        dest.parent.mkdir(parents=True, exist_ok=True)

        resp = self._call(
            "GET", "/apis/v1/objects", f"downloading {target}", params={"path": target}, stream=True
        )
        try:
            _save(resp, dest)
        except requests.RequestException as err:
            raise RemoteError(
                f"lost {self.url} while downloading {target}: {type(err).__name__} "
                "(nothing was written; try again)"
            ) from None

    def delete_objects(self, node_path: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), DELETE_BATCH):  # servers cap keys per request
            body = {"node": node_path, "paths": keys[start : start + DELETE_BATCH]}
            what = f"deleting objects of {node_path}"
            self._call("POST", "/apis/v1/objects/delete", what, json=body)
            self.writes.add(node_path, body["paths"])

    def close(self) -> None:
        self.session.close()


def _objects(rows: Iterable[dict[str, Any]]) -> Iterator[ObjectInfo]:
    """Listed rows as objects. The JSON decoder makes a new string for every row's
    mtime and content type: sharing them saves a third of a listing's memory."""
    shared: dict[str, str] = {}
    for row in rows:
        yield ObjectInfo.from_api(row, shared)
        if len(shared) > SHARED_MOST:  # objects put one by one: each mtime differs
            shared.clear()


SHARED_MOST = 10_000


def _no_graphs(err: RemoteError, url: str) -> RemoteError:
    """A server without the graphs API answers 404 with nothing to say."""
    if type(err) is RemoteError and "answered 404" in str(err):
        return RemoteError(f"{url} has no graphs API (lineage): it is not a T9k AIStore server")
    return err


def _save(resp: requests.Response, dest: Path) -> None:
    """Stream a response into ``dest`` via a temp file, so a failure leaves no partial file."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as fh, resp:
            for block in resp.iter_content(BLOCK):
                fh.write(block)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def with_retries(attempt: Callable[[], T], idempotent: bool) -> T:
    """``attempt()``, tried again with exponential backoff on connection errors, 429
    and 5xx; a call that is not idempotent is retried only if it never connected."""
    for n in range(RETRIES + 1):
        try:
            return attempt()
        except (requests.ConnectionError, requests.Timeout, _Transient) as err:
            never_sent = isinstance(err, requests.ConnectTimeout) or _refused(err)
            if n == RETRIES or not (idempotent or never_sent):
                raise
            time.sleep(BACKOFF_S * 2**n)
    raise AssertionError("unreachable")


def _refused(err: Exception) -> bool:
    text = str(err)
    return "NewConnectionError" in text or "Connection refused" in text


class RouteMissing(RemoteError):
    """The server does not have this call (an older or another server)."""


class TooLarge(RemoteError):
    """A body over one of the server's limits (413)."""


def map_error(resp: requests.Response, url: str, what: str, user: str | None) -> ManifestToolError:
    """PROTOCOL's error answers as typed errors naming the URL and what was attempted."""
    status, text = resp.status_code, resp.text.strip()
    message = _message(resp)
    if status in (401, 302):
        return KeyMissing(
            f"not logged in to {url}: run manifest-tool login {url} (or set MANIFEST_TOOL_API_KEY)"
        )
    if status == 400 and text.startswith("api key") and text.endswith("not found"):
        return KeyNotFound(
            f"the API key is not known to {url} (revoked or mistyped?): "
            f"run manifest-tool login {url} (or set MANIFEST_TOOL_API_KEY)"
        )
    if status == 403 and (detail := resp.headers.get("X-Error-Detail")):
        return NotAFolder(f"{url} refused {what}: {detail}")
    if status == 403:
        who = f"user {user!r}" if user else "this API key's user"
        return PermissionDenied(f"permission denied on {url}: {who} may not touch it ({what})")
    if status == 404 and (found := MISSING_RE.search(text)):
        return NodeNotFound(found.group(1), message)
    if status in (404, 405):
        return RouteMissing(f"{url} answered {status} while {what}: {message}")
    if status == 400 and "Invalid conflicting node Name" in text:
        return NameConflict(message)
    if status == 412:
        return RevisionMismatch(f"{message} ({what} on {url})")
    if status == 400 and message.startswith("checksum mismatch"):
        return ChecksumMismatch(f"{message} ({what} on {url})")
    if status == 400:
        return InvalidInput(f"{url} refused {what}: {message}")
    if status == FULL:
        return RemoteError(f"{url} could not store while {what}: {message}")
    if status == 413:
        return TooLarge(f"{url} answered {status} while {what}: {message}")
    if status == 429:
        return RemoteError(f"{url} refused {what}: {message}")
    if status >= 500:
        return RemoteError(
            f"cannot reach {url}: it answered {status} while {what} "
            "(is the server running? check --remote)"
        )
    return RemoteError(f"{url} answered {status} while {what}: {message}")


def _message(resp: requests.Response) -> str:
    """The ``error`` of a JSON answer, else its text, on one line."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    text = data["error"] if isinstance(data, dict) and "error" in data else resp.text
    return " ".join(str(text).split())[:500] or resp.reason or str(resp.status_code)
