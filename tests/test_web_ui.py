"""The web UI in a real headless Chromium (Debian's, driven by Playwright): log in,
browse to an artifact, download an object, another user's tree stays hidden, hostile
names are escaped, logout clears the cookie (issue 14, bullet 1)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from serverutil import Server, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
HOSTILE = "<script>alert(1)<img src=x onerror=alert(2)>"
WEIGHTS = os.urandom(150_000)
METADATA = """\
name: mnist
remote:
- action: upload
  timestamp: '2026-01-02T03:04:05.000000+00:00'
  host: http://example
  id: first-upload-id
  path: /alice/team/mnist
"""

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("no chromium here (.ci/run installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _seed(srv: Server) -> None:
    """Alice: a folder, an artifact with objects, history and a Run; Bob: a secret."""
    s = {u: requests.Session() for u in ("alice", "bob")}
    for user, session in s.items():
        session.headers.update(srv.headers(user))

    def node(user: str, parent: str, name: str, kind: str, **more: object) -> str:
        body = {"parent": parent, "name": name, "type": kind, **more}
        resp = s[user].post(f"{srv.url}/apis/v1/nodes", json=body, timeout=10)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["id"])

    def put(user: str, path: str, data: bytes) -> None:
        resp = s[user].post(
            f"{srv.url}/apis/v1/objects", params={"path": path}, files={"content": ("f", data)}
        )
        assert resp.status_code == 200, resp.text

    node("alice", "/alice", "team", "Folder")
    extra = {"alternativeName": "mnist-1a2b3c", "contentDigest": "sha256:" + "ab" * 32}
    art = node(
        "alice", "/alice/team", "mnist", "Artifact", labels=["cv", "v1"],
        description="Handwritten digits", extra=json.dumps(extra),
    )
    put("alice", "/alice/team/mnist/weights.bin", WEIGHTS)
    put("alice", "/alice/team/mnist/data/readme.txt", b"hello\n")
    put("alice", "/alice/team/mnist/metadata.yaml", METADATA.encode())
    done = {"node": "/alice/team/mnist", "extra": json.dumps(extra)}  # the digest goes last
    assert s["alice"].put(f"{srv.url}/apis/v1/nodes", json=done, timeout=10).status_code == 200
    run = node("alice", "/alice/team", "train-1", "Run")
    edge = s["alice"].post(
        f"{srv.url}/apis/v1/graphs", json={"graphs": [{"from": run, "to": art}]}, timeout=10
    )
    assert edge.status_code == 200, edge.text
    node("alice", "/alice/team", HOSTILE, "Artifact", description=HOSTILE, labels=[HOSTILE])
    node("bob", "/bob", "secret", "Artifact")
    put("bob", "/bob/secret/plans.txt", b"bob's plans")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("ui")) as server:
        _seed(server)
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 700}, accept_downloads=True)
    yield context.new_page()
    context.close()


def _login(page: Page, srv: Server, key: str) -> None:
    page.goto(f"{srv.url}/ui/")
    page.fill("input[name=apikey]", key)
    page.click("button[type=submit]")


def test_login_browse_download_and_screenshot(page: Page, srv: Server, tmp_path: Path) -> None:
    _login(page, srv, srv.keys["alice"])
    assert page.url == f"{srv.url}/ui/n/alice"
    assert srv.keys["alice"] not in page.url
    (cookie,) = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")

    page.click("text=team")
    page.click("#children >> text=mnist")
    assert page.url.endswith("/ui/n/alice/team/mnist")
    body = page.inner_text("main")
    for expected in ("cv", "v1", "Handwritten digits", "mnist-1a2b3c", "sha256:" + "ab" * 32,
                     "weights.bin", "data/readme.txt", "146.5 KiB", "train-1", "first-upload-id"):
        assert expected in body, expected

    with page.expect_download() as info:
        page.click("#objects >> text=weights.bin")
    assert Path(info.value.path()).read_bytes() == WEIGHTS

    page.click("#lineage >> text=train-1")  # the Run, and its edge back
    assert page.url.endswith("/ui/n/alice/team/train-1")
    assert "mnist" in page.inner_text("#lineage")
    page.go_back()

    shot = tmp_path / "ui.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("UPDATE_UI_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "ui.png")
    assert srv.keys["alice"] not in srv.logs()


def test_another_users_tree_is_invisible(page: Page, srv: Server) -> None:
    _login(page, srv, srv.keys["alice"])
    for url, status in [
        ("/ui/n/bob", 403),
        ("/ui/n/bob/secret", 403),
        ("/ui/o/bob/secret/plans.txt", 403),
        ("/ui/n/alice/nope", 404),
    ]:
        resp = page.goto(srv.url + url)
        assert resp.status == status, url
        assert "plans" not in page.content()
    pasted = page.goto(f"{srv.url}/ui/n/{srv.keys['alice']}")
    assert pasted.status == 403
    assert srv.keys["alice"] not in page.content()
    api = requests.get(f"{srv.url}/apis/v1/nodes/info", params={"node": "/bob/secret"},
                       headers=srv.headers("alice"), timeout=10)
    assert api.status_code == 403  # the same answer as the API's


def test_hostile_name_is_shown_escaped(page: Page, srv: Server) -> None:
    _login(page, srv, srv.keys["alice"])
    dialogs: list[str] = []  # an alert() that ran would show up here
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{srv.url}/ui/n/alice/team")
    page.click(f"#children >> text={HOSTILE}")
    assert page.inner_text("h1").startswith(HOSTILE)
    assert HOSTILE in page.inner_text("#description")
    assert dialogs == []
    assert page.locator("main script, main img").count() == 0


def test_bad_key_and_logout(page: Page, srv: Server) -> None:
    _login(page, srv, "not-a-key-0000")
    assert page.locator("#login-error").is_visible()
    assert page.context.cookies() == []

    _login(page, srv, srv.keys["bob"])
    assert page.inner_text(".user") == "bob"
    page.click("text=Log out")
    assert page.context.cookies() == []
    resp = page.goto(f"{srv.url}/ui/n/bob")
    assert resp.status == 200 and page.url == f"{srv.url}/ui/"
    assert page.locator("input[name=apikey]").is_visible()


def test_a_form_posted_from_another_site_is_refused(srv: Server) -> None:
    for path in ("/ui/login", "/ui/logout"):
        resp = requests.post(
            srv.url + path, data={"apikey": srv.keys["alice"]},
            headers={"Origin": "https://evil.example"}, allow_redirects=False, timeout=10,
        )
        assert resp.status_code == 403, path
        assert "set-cookie" not in resp.headers
        assert srv.keys["alice"] not in resp.text
