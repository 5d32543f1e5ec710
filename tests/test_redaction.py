"""No API key in anything the server writes, however the request spells it."""

from __future__ import annotations

import http.client
import uuid
from pathlib import Path
from urllib.parse import unquote_plus, urlsplit

from serverutil import running_server


def pct(text: str, upper: bool = False) -> str:
    """Every character percent-encoded."""
    return "".join(f"%{b:02X}" if upper else f"%{b:02x}" for b in text.encode())


def get(url: str, target: str) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def queries(key: str, wrong: str) -> list[str]:
    return [
        f"/oauth2/userinfo?%61pikey={key}",
        f"/oauth2/userinfo?api%6Bey={key}",
        f"/oauth2/userinfo?{pct('apikey')}={pct(key)}",
        f"/oauth2/userinfo?{pct('apikey', upper=True)}={pct(key, upper=True)}",
        f"/oauth2/userinfo?apikey={key.upper()}",
        f"/oauth2/userinfo?APIKEY={key}",
        f"/oauth2/userinfo?+apikey={key}",
        f"/oauth2/userinfo?x=1&%61pikey={wrong}&y=2",
        f"/oauth2/userinfo?apikey={wrong}&%61pikey={key}",
        f"/apis/v1/nodes/info?node=/alice/{key}&%61pikey={key}",
        f"/apis/v1/nodes/info?node={pct(key)}&%61pikey={key}",
    ]


def test_keys_are_redacted_by_decoded_name_everywhere(tmp_path: Path) -> None:
    with running_server(tmp_path, users=["alice"]) as srv:
        key, wrong = srv.keys["alice"], str(uuid.uuid4())
        get(srv.url, "/x%0a127.0.0.1%20%22GET%20/forged%22%20200")
        answers = [get(srv.url, target) for target in queries(key, wrong)]
        srv.stop()  # every line written
        logs = srv.logs()
    statuses = [status for status, _ in answers]
    assert statuses[:2] == [200, 200] and 404 in statuses and 400 in statuses, statuses
    assert logs.count("=***") >= len(answers)  # the access log ran, masking
    assert not [line for line in logs.splitlines() if "GET /forged" in line.split("\\x0a")[0]]
    written = [logs, *(body for _, body in answers)]
    for text in written:
        plain = unquote_plus(text).lower()
        for secret in (key, wrong):
            assert secret.lower() not in plain, text
            assert secret.replace("-", "").lower() not in plain.replace("-", "")


def test_the_web_uis_cookie_counts_as_a_key() -> None:
    from manifest_tool.server.redact import UI_COOKIE, secrets_of

    key = str(uuid.uuid4())
    cookie = f"theme=dark; {UI_COOKIE}={key}; other=1".encode()
    assert secrets_of({"headers": [(b"cookie", cookie)], "query_string": b""}) == {key}
