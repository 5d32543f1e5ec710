"""Upload throughput against a local ``manifest-tool serve``, as ratios to curl.

Measures one 1 GiB file and 10,000 files of 1 KiB, each sent by curl (the same
protocol call: ``POST /apis/v1/objects`` with ``-F content=@file``, keep-alive for
the small files), by the Python API (``Artifact.upload`` over HttpRemote), and by
``manifest-tool apply`` (which also stages and hashes). The machines are noisy, so
compare the ratios of one run, not absolute figures across runs. The performance
table (bench_table.py) holds the CLI's measures; this one adds the Python API.

    python bench/bench_upload.py [--big-mib 1024] [--small 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import TOOL, USER, BenchError, Server, run, serving, tool_env
from peers import curl_upload, make_node
from trees import KiB, write_big

from manifest_tool import create_artifact, login, session


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def make_small(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"f{i:05d}.bin").write_bytes(os.urandom(KiB))


def curl_small(srv: Server, folder: Path, node: str, work: Path) -> None:
    """All files through one curl process, one request each on a kept-alive connection."""
    config = work / "curl.cfg"
    with open(config, "w") as fh:
        for i, path in enumerate(sorted(folder.iterdir())):
            if i:
                fh.write("next\n")
            fh.write(f'header = "Authorization: Bearer {srv.keys[USER]}"\n')
            fh.write(f'form = "content=@{path}"\noutput = "/dev/null"\n')
            fh.write(f'url = "{srv.url}/apis/v1/objects?path={node}/{path.name}"\n')
    subprocess.run(["curl", "-sSf", "-K", str(config)], check=True)


def api_upload(srv: Server, name: str, add: Callable[[object], None], folder: str) -> float:
    session.reset()
    login(srv.url, srv.keys[USER])
    art = create_artifact(name)
    add(art)
    return timed(lambda: art.upload(folder=folder, make_folder=True))


def apply_upload(srv: Server, work: Path, name: str, entry: str) -> float:
    manifest = work / f"{name}.yaml"
    manifest.write_text(
        f"version: 1\nartifacts:\n"
        f"  - name: {name}\n    folder: bench-apply\n    make_folder: true\n"
        f"    objects:\n      - {entry}\n"
    )
    try:
        return run([*TOOL, "-f", str(manifest), "apply"], work, tool_env(work, srv), 3600).seconds
    except BenchError as exc:
        print(f"apply failed: {exc}")
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        work = Path(tmp)
        os.environ["EM_ARTIFACT_PARENT_DIR"] = str(work / "em")
        os.chdir(work)
        big, small = work / "src" / "big.bin", work / "src" / "small"
        big.parent.mkdir()
        write_big(big, args.big_mib)
        make_small(small, args.small)
        with serving(work / "srv", work / "logs") as srv:
            rows = run_all(srv, work, big, small)
        session.reset()
    report(rows, args.big_mib, args.small)


def run_all(srv: Server, work: Path, big: Path, small: Path) -> list[tuple[str, float, float]]:
    """(case, seconds, curl's seconds for the same bytes)."""
    curl_b = curl_upload(srv, big, make_node(srv, "curl-big"), 3600).seconds
    curl_s = timed(lambda: curl_small(srv, small, make_node(srv, "curl-small"), work))
    api_b = api_upload(srv, "apibig", lambda a: a.add_file(str(big)), "bench-api")  # type: ignore[attr-defined]
    api_s = api_upload(srv, "apismall", lambda a: a.add_dir(str(small), "small/"), "bench-api")  # type: ignore[attr-defined]
    apply_b = apply_upload(srv, work, "applybig", "file: src/big.bin")
    apply_s = apply_upload(srv, work, "applysmall", "dir: src/small\n        obj_path: small/")
    return [
        ("big: curl -F", curl_b, curl_b),
        ("big: Artifact.upload (HttpRemote)", api_b, curl_b),
        ("big: manifest-tool apply", apply_b, curl_b),
        ("small: curl -F (keep-alive)", curl_s, curl_s),
        ("small: Artifact.upload (HttpRemote)", api_s, curl_s),
        ("small: manifest-tool apply", apply_s, curl_s),
    ]


def report(rows: list[tuple[str, float, float]], big_mib: int, small: int) -> None:
    print(f"big = one file of {big_mib} MiB; small = {small} files of 1 KiB")
    print(f"{'case':44} {'seconds':>8} {'rate':>14} {'vs curl':>8}")
    for case, secs, base in rows:
        rate = (
            f"{big_mib / secs:.0f} MiB/s"
            if case.startswith("big")
            else f"{small / secs:.0f} files/s"
        )
        print(f"{case:44} {secs:8.2f} {rate:>14} {base / secs:8.2f}x")


if __name__ == "__main__":
    main()
