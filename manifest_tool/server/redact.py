"""Keeping API keys out of what the server writes: logs and error bodies.

A key parameter is recognised by its *decoded* name, as Starlette reads it:
``?%61pikey=KEY`` is accepted as ``apikey``, so it must be redacted as one.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus

from starlette.types import Scope

SECRET_PARAMS = frozenset({"apikey", "api_key", "access_token", "token"})
MIN_SECRET = 8  # shorter "keys" are not worth scrubbing out of every text
MASK = "***"
UI_COOKIE = "manifest_tool_key"  # the web UI's cookie: its value is a key, too


def is_secret_param(raw_name: str) -> bool:
    return unquote_plus(raw_name).strip().lower() in SECRET_PARAMS


def redact_query(query: str, secrets: frozenset[str] = frozenset()) -> str:
    """The query string as sent, with the value of every secret parameter, and of
    any parameter that decodes to one of ``secrets``, masked."""
    out = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if is_secret_param(name) or _holds(unquote_plus(value), secrets):
            pair = f"{name}={MASK}"
        out.append(pair)
    return "&".join(out)


def _holds(text: str, secrets: frozenset[str]) -> bool:
    return any(secret.lower() in text.lower() for secret in secrets)


def secrets_of(scope: Scope) -> frozenset[str]:
    """Every key the request carried: its bearer token, the UI's cookie and secret
    parameters' values."""
    found: set[str] = set()
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                found.add(token.strip())
        elif name == b"cookie":
            found.update(_cookie_keys(value.decode("latin-1")))
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name.strip().lower() in SECRET_PARAMS:
            found.add(value.strip())
    return frozenset(s for s in found if len(s) >= MIN_SECRET)


def _cookie_keys(header: str) -> list[str]:
    pairs = (part.strip().partition("=") for part in header.split(";"))
    return [value.strip().strip('"') for name, _, value in pairs if name.strip() == UI_COOKIE]


def scrub(text: str, secrets: frozenset[str]) -> str:
    """``text`` with each of ``secrets`` masked, in any letter case."""
    for secret in secrets:
        start = text.lower().find(secret.lower())
        while start >= 0:
            text = text[:start] + MASK + text[start + len(secret) :]
            start = text.lower().find(secret.lower(), start + len(MASK))
    return text
