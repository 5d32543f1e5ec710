"""Issue 10: the Python API behaves as T9k's SDK 0.6.0b0 ``t9k.em`` does, row by row
(exception types, login, reference keys, on-disk bytes, history, loading, logging),
on the embedded store and over HTTP alike."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from conftest import USER, Remote

from manifest_tool import Artifact, create_artifact, load_artifact, login, session

BOB = "bob"
LogIn = Callable[[str], None]


@pytest.fixture(scope="module")
def parity_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from serverutil import running_server

    with running_server(tmp_path_factory.mktemp("srv"), users=[USER, BOB]) as server:
        yield server


@pytest.fixture(scope="module")
def http_server(parity_server: object) -> tuple[str, str]:
    """The ``remote`` fixture's server, here with a second user, bob."""
    return parity_server.url, parity_server.keys[USER]  # type: ignore[attr-defined]


@pytest.fixture
def as_user(
    remote: Remote, api_env: None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> LogIn:
    """``as_user(name)`` logs the Python API in to ``remote`` as that user."""

    def log_in(user: str) -> None:
        session.reset()
        if remote.url.startswith("file:"):
            monkeypatch.setenv("MANIFEST_TOOL_USER", user)
            login(remote.url)
        else:
            server = request.getfixturevalue("parity_server")
            login(ais_host=remote.url, api_key=server.keys[user])

    log_in(USER)
    return log_in


def make(name: str, files: dict[str, bytes], tmp: Path) -> Artifact:
    art = create_artifact(name)
    for key, data in files.items():
        src = tmp / "src" / key
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        art.add_file(str(src), key)
    return art


# -- 1. exception types ------------------------------------------------------------------
def test_conflict_strategy_error_is_a_runtime_error(as_user: LogIn, tmp_path: Path) -> None:
    make("shared", {"a.txt": b"theirs"}, tmp_path).upload(folder="f", make_folder=True)
    with pytest.raises(RuntimeError, match=r"^Artifact already exists in Folder /alice/f"):
        make("shared", {"a.txt": b"ours"}, tmp_path).upload(folder="f", conflict_strategy="error")


def test_another_users_path_is_a_runtime_error_on_upload_and_load(
    as_user: LogIn, tmp_path: Path
) -> None:
    make("private", {"s.txt": b"secret"}, tmp_path).upload(folder="cv", make_folder=True)
    as_user(BOB)
    with pytest.raises(RuntimeError, match=r"(?i)permission denied"):
        load_artifact("/alice/cv/private")
    with pytest.raises(RuntimeError, match=r"(?i)permission denied"):
        make("mine", {"b.txt": b"b"}, tmp_path).upload(folder="/alice/cv")


def test_load_of_a_missing_remote_path_is_an_os_error(as_user: LogIn) -> None:
    with pytest.raises(OSError, match="/alice/nowhere/x"):
        load_artifact("nowhere/x")


def test_load_of_a_folder_is_a_runtime_error(as_user: LogIn, tmp_path: Path) -> None:
    make("m", {"a": b"a"}, tmp_path).upload(folder="cv", make_folder=True)
    with pytest.raises(RuntimeError, match=r"^Remote path refers to type 'Folder' rather than"):
        load_artifact("/alice/cv")


def test_a_local_dir_without_metadata_is_file_not_found(
    api_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plain").mkdir()
    monkeypatch.setenv("MANIFEST_TOOL_REMOTE", f"file:{tmp_path / 'store'}")
    with pytest.raises(FileNotFoundError, match=r"metadata\.yaml"):
        load_artifact(str(tmp_path / "plain"))


# -- 1 and 2. login ---------------------------------------------------------------------
def test_login_takes_the_sdks_parameter_names_and_the_host_alias(
    remote: Remote, api_env: None, parity_server: object
) -> None:
    key = remote.env.get("MANIFEST_TOOL_API_KEY")
    if remote.url.startswith("file:"):
        login(ais_host=remote.url, timeout=5)
        login(host=remote.url)
        login(remote.url, None, 5)
    else:
        login(ais_host=remote.url, api_key=key, timeout=5)
        login(host=remote.url, api_key=key)
        login(remote.url, key, 5)
    assert session.remote().whoami() == USER


def test_login_errors_are_the_sdks_types(api_env: None, parity_server: object) -> None:
    url = parity_server.url  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="not known"):
        login(ais_host=url, api_key="00000000-0000-4000-8000-000000000000")
    with pytest.raises(ValueError, match="Invalid API Key format"):
        login(ais_host=url, api_key="not-a-uuid")
    with pytest.raises(ValueError, match="API Key not provided"):
        login(ais_host=url)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    key = parity_server.keys[USER]  # type: ignore[attr-defined]
    with pytest.raises(requests.ConnectionError):
        login(ais_host=f"http://127.0.0.1:{port}", api_key=key)


# -- 7. logging -------------------------------------------------------------------------
def test_upload_and_load_log_what_the_sdk_logs(
    as_user: LogIn,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="manifest_tool")
    make("shared", {"a.txt": b"theirs"}, tmp_path).upload(folder="f", make_folder=True)
    make("shared", {"a.txt": b"ours"}, tmp_path).upload(folder="f", conflict_strategy="skip")
    with pytest.raises(RuntimeError):
        make("shared", {"a.txt": b"x"}, tmp_path).upload(folder="f", conflict_strategy="error")
    load_artifact("f/shared")
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    msgs = [m for _, _, m in lines]
    assert all(name.startswith("manifest_tool") for name, _, _ in lines)
    assert "Artifact shared already exists in Folder /alice/f, skip this upload" in msgs
    assert "ERROR" in {level for _, level, m in lines if m.endswith(", abort")}
    assert "Loaded Artifact from remote path f/shared" in msgs
    with pytest.raises(ValueError):
        art = create_artifact("clash")
        art.add_reference("s3://b/k")
        art.add_reference("s3://b/k")  # the same reference again is fine
        art.add_file(__file__, "k")
    assert any(
        level == "ERROR" and "Failed to add object k" in m
        for _, level, m in ((r.name, r.levelname, r.getMessage()) for r in caplog.records)
    )
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


# -- 3. reference keys ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "obj_path", "key"),
    [
        ("https://e.org/m.tar.gz?x=1", "raw/", "raw/m.tar.gz?x=1"),
        ("https://e.org/m.tar.gz?x=1", None, "m.tar.gz?x=1"),
        ("https://e.org/a/b.bin#frag", None, "b.bin#frag"),
        ("https://e.org/a?p=x/y", "/r/", "r/y"),
        ("https://e.org/dir/", "named", "named"),
        ("s3://bucket/k", "/top", "top"),
    ],
)
def test_a_reference_key_is_the_uri_basename_as_the_sdk_takes_it(
    api_env: None, uri: str, obj_path: str | None, key: str
) -> None:
    art = create_artifact("refs")
    art.add_reference(uri, obj_path)
    assert art.objects == {key: {"path": key, "uri": uri}}


@pytest.mark.parametrize("obj_path", [None, "raw/"])
def test_a_reference_ending_in_a_slash_needs_a_name(api_env: None, obj_path: str | None) -> None:
    art = create_artifact("refs")
    with pytest.raises(ValueError, match="ends in '/'"):
        art.add_reference("https://e.org/dir/", obj_path)
    assert art.objects == {}


# -- 4. the same bytes on disk ----------------------------------------------------------
GOLDEN = Path(__file__).parent / "golden" / "t9k"  # written by the SDK's write_yaml_file
GOLDEN_REFS = [
    ("https://e.org/m.tar.gz?x=1", "raw/"),
    ("s3://b/zeta", None),
    ("https://e.org/alpha#f", None),
    ("https://e.org/\u6570\u636e", None),
]


def golden_artifact() -> Artifact:
    """The artifact whose files the SDK wrote into tests/golden/t9k (same history)."""
    host = "http://127.0.0.1:8080/t9k/aistore/server"
    node = "11111111-2222-4333-8444-555555555555"
    art = Artifact(
        {
            "name": "golden",
            "labels": ["\u6807\u7b7e", "\xfc-label", "plain"],
            "description": "Beschreibung: gr\xf6\xdfer \u2014 \u8bf4\u660e",
            "createdTimestamp": "2026-11-29T17:00:00.123456+08:00",
            "alternativeName": "golden_261129_170000_abc123",
            "remote": [
                {"action": "upload", "timestamp": "2026-11-29T17:00:01.000001+08:00",
                 "host": host, "id": node, "path": "/alice/f/golden"},
                {"action": "download", "timestamp": "2026-11-29T17:00:02.000002+08:00",
                 "host": host, "path": "/alice/f/golden", "id": node},
            ],
        }
    )  # fmt: skip
    art.save()
    for uri, obj_path in GOLDEN_REFS:
        art.add_reference(uri, obj_path)
    return art


def test_metadata_and_references_are_the_sdks_bytes(api_env: None) -> None:
    art = golden_artifact()
    for name in ("metadata.yaml", "references.yaml"):
        assert Path(art.local, name).read_bytes() == (GOLDEN / name).read_bytes(), name


def test_loading_and_saving_keeps_the_bytes(api_env: None) -> None:
    from manifest_tool.loading import load_local

    art = golden_artifact()
    loaded = load_local(Path(art.local))
    assert [k for k, o in loaded.objects.items() if "uri" in o] == [
        "raw/m.tar.gz?x=1", "zeta", "alpha#f", "\u6570\u636e",
    ]  # fmt: skip
    loaded.save()
    for name in ("metadata.yaml", "references.yaml"):
        assert Path(art.local, name).read_bytes() == (GOLDEN / name).read_bytes(), name


def test_the_uploaded_yaml_is_the_local_yaml(as_user: LogIn, tmp_path: Path) -> None:
    art = golden_artifact()
    art.upload(folder="f", make_folder=True)
    node = f"/alice/f/{art.name}"
    entry = art.remote[-1]
    assert list(entry) == ["action", "timestamp", "host", "id", "path"]
    for name in ("metadata.yaml", "references.yaml"):
        dest = tmp_path / "got" / name
        dest.parent.mkdir(exist_ok=True)
        session.remote().get_object(node, name, dest)
        assert dest.read_bytes() == Path(art.local, name).read_bytes(), name
    assert (
        Path(art.local, "references.yaml").read_bytes() == (GOLDEN / "references.yaml").read_bytes()
    )
    loaded = load_artifact(node)
    assert list(loaded.remote[-1]) == ["action", "timestamp", "host", "path", "id"]


# -- 6. loading keeps every object ------------------------------------------------------
ODD_NAMES = {
    "w": b"w",
    ".w.part": b"not a temp file",
    ".manifest-tool-download-1/x": b"not staging",
    ".manifest-tool-download-odd-abc/0": b"nor this",
    "sub/.hidden": b"h",
}


def test_loading_keeps_every_object_whatever_its_name(
    as_user: LogIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    art = make("odd", ODD_NAMES, tmp_path)
    art.upload(folder="f", make_folder=True)
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "elsewhere"))
    loaded = load_artifact("f/odd")
    assert set(loaded.objects) == set(ODD_NAMES)
    for key, data in ODD_NAMES.items():
        assert Path(loaded.local, key).read_bytes() == data
    assert set(load_artifact(loaded.local).objects) == set(ODD_NAMES)
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == [art.alternative_name]


# -- 5. adopting an SDK-uploaded artifact -----------------------------------------------
ADOPT_MANIFEST = """\
version: 1
artifacts:
  - name: ds
    folder: {folder}
    make_folder: true
    labels: [{label}]
    description: from the manifest
    alternative_name: {alt}
    objects:
      - dir: data
"""


@pytest.mark.parametrize("change", ["content", "labels"])
def test_a_manifest_pinning_an_sdk_artifact_keeps_its_timestamp_and_history(
    as_user: LogIn, remote: Remote, tmp_path: Path, change: str
) -> None:
    import yaml
    from conftest import Project, run_in_process

    art = create_artifact("ds", labels=["a"], description="from the manifest")
    (tmp_path / "sdk").mkdir()
    (tmp_path / "sdk" / "a.txt").write_bytes(b"alpha\n")
    art.add_file(str(tmp_path / "sdk" / "a.txt"))
    folder = f"adopt-{change}"  # the HTTP server is the module's: one folder per case
    art.upload(folder=folder, make_folder=True)
    uploaded = list(art.remote)
    project = Project(tmp_path / "project")
    project.write("data/a.txt", b"alpha\n" if change == "labels" else b"changed\n")
    label = "b" if change == "labels" else "a"
    project.manifest(ADOPT_MANIFEST.format(folder=folder, label=label, alt=art.alternative_name))
    code, out, err = run_in_process(
        "apply", "--remote", remote.url, cwd=project.root, env=remote.env
    )
    assert code == 0, out + err
    got = tmp_path / "got.yaml"
    session.remote().get_object(f"/alice/{folder}/ds", "metadata.yaml", got)
    meta = yaml.safe_load(got.read_text())
    assert meta["createdTimestamp"] == art.created_timestamp
    assert meta["remote"][:-1] == uploaded and meta["remote"][-1]["action"] == "upload"
    lock = yaml.safe_load((project.root / "artifacts.lock").read_text())["artifacts"]["ds"]
    assert lock["createdTimestamp"] == art.created_timestamp
    code, out, err = run_in_process(
        "plan", "--remote", remote.url, cwd=project.root, env=remote.env
    )
    assert (code, out) == (0, "No changes.\n"), out + err
