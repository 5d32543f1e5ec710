"""A second hostile pass over the hardening: each test pins one finding (the real
server on a loopback port, the real CLI in-process)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import requests
from conftest import Project, cli_env, run_in_process
from serverutil import Server, running_server

from manifest_tool.hashing import md5_bytes
from manifest_tool.remotes.base import ARTIFACT
from manifest_tool.remotes.http import HttpRemote

A, B = "alice", "bob"
MiB = 1024 * 1024


@contextlib.contextmanager
def uploads_holding_threads(srv: Server, count: int) -> Iterator[None]:
    """``count`` of alice's uploads that send their first MiB, then stall: each holds
    an upload thread until its connection goes."""
    parts = urlsplit(srv.url)
    auth = srv.headers(A)["Authorization"]
    preamble = (
        b'--b\r\nContent-Disposition: form-data; name="content"; filename="s"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
            socks.append(sock)
            sock.sendall(
                (
                    f"POST /apis/v1/objects?path=/{A}/art/slow{i} HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: {auth}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                    f"Content-Length: {4 * MiB}\r\n\r\n"
                ).encode()
                + preamble
                + b"x" * (MiB + 1024)
            )
        time.sleep(1.0)  # the server hands each one a thread
        yield
    finally:
        for sock in socks:
            sock.close()


def put(srv: Server, user: str, key: str, data: bytes) -> requests.Response:
    return requests.post(
        f"{srv.url}/apis/v1/objects",
        headers=srv.headers(user),
        params={"path": f"/{user}/art/{key}", "md5": md5_bytes(data)},
        files={"content": (key, data)},
        timeout=10,
    )


def test_one_users_stalled_uploads_cannot_hold_every_upload_thread(tmp_path: Path) -> None:
    with running_server(tmp_path, users=[A, B]) as srv:
        for user in (A, B):
            HttpRemote(srv.url, srv.keys[user]).create_node(f"/{user}", "art", ARTIFACT)
        with uploads_holding_threads(srv, 16):
            started = time.monotonic()
            assert put(srv, B, "b.txt", b"bob's").status_code == 200
            assert time.monotonic() - started < 3
            refused = put(srv, A, "a.txt", b"alice's")
            assert refused.status_code == 429 and refused.headers["Retry-After"]
            assert "uploads being written" in refused.json()["error"]
        deadline = time.monotonic() + 10
        while put(srv, A, "a.txt", b"alice's").status_code != 200:
            assert time.monotonic() < deadline, "alice's slots were never given back"
            time.sleep(0.2)


def test_a_long_multipart_boundary_is_400(tmp_path: Path) -> None:
    with running_server(tmp_path, users=[A]) as srv:
        HttpRemote(srv.url, srv.keys[A]).create_node(f"/{A}", "art", ARTIFACT)
        resp = requests.post(
            f"{srv.url}/apis/v1/objects",
            headers={
                **srv.headers(A),
                "Content-Type": "multipart/form-data; boundary=" + "b" * 257,
            },
            params={"path": f"/{A}/art/x"},
            data=b"--" + b"b" * 257 + b"\r\n",
            timeout=10,
        )
        assert resp.status_code == 400 and "boundary" in resp.json()["error"]


def test_keys_no_file_system_can_hold_are_refused_by_the_server(tmp_path: Path) -> None:
    with running_server(tmp_path, users=[A]) as srv:
        HttpRemote(srv.url, srv.keys[A]).create_node(f"/{A}", "art", ARTIFACT)
        for key in ("x.txt\n", "a" * 300, "/".join(["ab"] * 400)):
            resp = put(srv, A, key, b"d")
            assert resp.status_code == 400, (key[:20], resp.status_code)


def manifest_with(project: Project, description: str) -> None:
    project.write("d/a.txt", "a")
    project.manifest(
        f"version: 1\nartifacts:\n  - name: a\n    description: '{description}'\n"
        "    objects: [{dir: d}]\n"
    )


def one_line_error(project: Project) -> str:
    code, out, err = run_in_process("plan", cwd=project.root)
    assert code == 1, (code, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_python_errors_in_templates_are_one_line(project: Project) -> None:
    for template in ("{{ 1/0 }}", '{{ "%d"|format("a") }}', "{{ range(0,10,0)|list }}"):
        manifest_with(project, template)
        assert "template error" in one_line_error(project)


def test_templates_that_build_huge_strings_stop_before_memory_runs_out(
    project: Project,
) -> None:
    for template in (
        '{{ ("x"|center(3000000000))|length }}',
        '{{ "x".zfill(3000000000)|length }}',
        '{{ "{:>3000000000}".format("x")|length }}',
    ):
        manifest_with(project, template)
        assert "too large" in one_line_error(project)


def test_secret_looking_names_are_hidden_from_templates(project: Project) -> None:
    for name in ("DB_PASS", "GITHUB_PAT", "CI_JOB_JWT", "SENTRY_DSN"):
        manifest_with(project, f"{{{{ env.{name} }}}}")
        code, _, err = run_in_process("plan", cwd=project.root, env=cli_env(**{name: "s3cr3t"}))
        assert code == 1 and "allow_env" in err and "s3cr3t" not in err, err
    manifest_with(project, "{{ env.MY_PATH_VALUE }}")  # PAT inside a word is no secret
    assert run_in_process("plan", cwd=project.root, env=cli_env(MY_PATH_VALUE="ok")).code == 0


def test_numbers_no_manifest_needs_are_one_line(project: Project) -> None:
    project.write("d/a.txt", "a")
    for value in ("9" * 5000, "0x" + "f" * 20000):
        project.manifest(
            f"version: 1\nartifacts:\n  - name: a\n    labels: [{value}]\n"
            "    objects: [{dir: d}]\n"
        )
        one_line_error(project)


# -- a hostile pass over the web UI and onboarding ------------------------------------------


def test_an_object_from_the_api_is_an_inert_attachment(tmp_path: Path) -> None:
    """An uploaded .html must not run as a page of the server's origin, where the web
    UI's cookie lives."""
    with running_server(tmp_path, users=[A]) as srv:
        HttpRemote(srv.url, srv.keys[A]).create_node(f"/{A}", "art", ARTIFACT)
        assert put(srv, A, "x.html", b"<script>alert(1)</script>").status_code == 200
        resp = requests.get(
            f"{srv.url}/apis/v1/objects",
            headers=srv.headers(A),
            params={"path": f"/{A}/art/x.html"},
            timeout=10,
        )
        assert resp.content == b"<script>alert(1)</script>"
        assert resp.headers["Content-Disposition"].startswith("attachment")
        assert "sandbox" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_a_huge_metadata_yaml_does_not_hold_up_the_web_ui(tmp_path: Path) -> None:
    with running_server(tmp_path, users=[A]) as srv:
        HttpRemote(srv.url, srv.keys[A]).create_node(f"/{A}", "art", ARTIFACT)
        entry = "- {action: upload, timestamp: t, host: h, id: i, path: p}\n"
        big = ("remote:\n" + entry * 23000).encode()
        assert put(srv, A, "metadata.yaml", big).status_code == 200
        session = requests.Session()
        login = session.post(
            f"{srv.url}/ui/login", data={"apikey": srv.keys[A]}, timeout=10,
            headers={"Origin": srv.url},
        )  # fmt: skip
        assert login.status_code in (200, 303), login.status_code
        started = time.monotonic()
        page = session.get(f"{srv.url}/ui/n/{A}/art", timeout=10)
        assert page.status_code == 200 and time.monotonic() - started < 2


def test_a_manifest_above_the_current_directory_must_be_the_users_own(
    project: Project,
) -> None:
    import os

    project.write("d/a.txt", "a")
    manifest = project.manifest(
        "version: 1\nremote: {url: 'http://127.0.0.1:9'}\nartifacts:\n"
        "  - name: a\n    objects: [{dir: d}]\n"
    )
    (project.root / "sub").mkdir()
    os.chown(manifest, 65534, 65534)  # nobody's file, as one left in /tmp would be
    code, _, err = run_in_process("plan", cwd=project.root / "sub")
    assert code == 1 and "belongs to another user" in err and "-f" in err, err
    os.chown(manifest, os.geteuid(), os.getegid())
    code, _, err = run_in_process("validate", cwd=project.root / "sub")
    assert code == 0, err


def test_init_never_writes_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "bashrc").write_text("mine\n")
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "manifest.schema.json").symlink_to(outside / "bashrc")
    (repo / "artifacts.yaml").symlink_to(outside / "new")  # dangling
    code, _, err = run_in_process("init", cwd=repo)
    assert code == 1 and "exists" in err, err
    (repo / "artifacts.yaml").unlink()
    (repo / ".gitignore").symlink_to(outside / "notes")
    code, _, err = run_in_process("init", cwd=repo)
    assert code == 1 and "symlink" in err, err
    assert (outside / "bashrc").read_text() == "mine\n"
    assert not (outside / "new").exists() and not (outside / "notes").exists()
    (repo / ".gitignore").unlink()
    assert run_in_process("init", cwd=repo).code == 0
    assert (outside / "bashrc").read_text() == "mine\n"  # the link was replaced, not followed
    assert not (repo / "manifest.schema.json").is_symlink()


def test_init_writes_a_manifest_that_validates_whatever_the_directory_names(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    for name in ("49", "{{ 7*7 }}", "data"):
        (repo / name).mkdir(parents=True)
        (repo / name / "f.txt").write_text("x")
    assert run_in_process("init", cwd=repo).code == 0
    text = (repo / "artifacts.yaml").read_text()
    assert "{{ 7*7 }}" not in text.split("artifacts:")[1]
    code, _, err = run_in_process("validate", cwd=repo)
    assert code == 0, err
