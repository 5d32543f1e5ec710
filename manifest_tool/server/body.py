"""Reading request bodies with bounds that hold whatever the transfer encoding.

Content-Length is only a hint: a chunked body has none, so sizes are counted as
the bytes arrive, and a client that stops sending is dropped after an idle time
instead of holding its connection (and anything waiting on it) for ever.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request

from ..errors import InvalidInput
from .errors import BodyTimeout, BodyTooLarge


async def body_chunks(request: Request, idle_s: float) -> AsyncIterator[bytes]:
    """The body as it arrives; BodyTimeout when no byte comes for ``idle_s``."""
    stream = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(idle_s):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyTimeout(
                f"the request body sent nothing for {idle_s:g} s; send it without pauses"
            ) from None
        yield chunk


async def read_limited(request: Request, limit: int, idle_s: float) -> bytes:
    """The whole (small) body, refused as soon as it passes ``limit`` bytes."""
    too_large = BodyTooLarge(f"JSON body over the server's limit of {limit} bytes")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in body_chunks(request, idle_s):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A JSON object, with every way JSON can be bad answered as a 400."""
    try:
        data = json.loads(body or b"null")
    except RecursionError:
        raise InvalidInput("request body is JSON nested too deeply") from None
    except ValueError:
        raise InvalidInput("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    try:  # "\ud800" parses, but no database or file name can hold it
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InvalidInput("request body holds a lone surrogate (\\ud800-\\udfff)") from None
    except RecursionError:
        raise InvalidInput("request body is JSON nested too deeply") from None
    for name, value in data.items():  # PostgreSQL's text cannot hold NUL: refused alike
        if _holds_nul(name) or _holds_nul(value):
            raise InvalidInput(f"field {name!r} must not contain a NUL character")
    return data


def _holds_nul(value: object) -> bool:
    """Whether a parsed JSON value holds NUL in any string (keys too), without recursion:
    a deep document was refused above, a wide one costs one pass."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
