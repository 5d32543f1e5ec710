"""Two replicas on PostgreSQL + S3 store batches whose objects share blobs across
nodes, while deletes collect those same blobs: no error, and afterwards every listed
object reads back byte for byte (a blob collected twice once left a row without
bytes that the next put of that content trusted)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from conftest import USER
from serverutil import running_replicas

from manifest_tool.hashing import md5_bytes
from manifest_tool.remotes.base import Upload
from manifest_tool.remotes.http import HttpRemote

POOL = [(b"small %d " % i) * (i + 1) for i in range(50)] + [
    bytes([i]) * (70 * 1024 + i) for i in range(6)  # over INLINE_MAX: S3 blobs
]


def test_shared_blobs_race(tmp_path: Path) -> None:
    with running_replicas(tmp_path / "rep", users=[USER]) as pair:
        urls = [s.url for s in pair.servers]
        key = pair.keys[USER]
        setup = HttpRemote(urls[0], key)
        setup.create_node(f"/{USER}", "race", "Folder")
        for name in ("x", "y", "z"):
            setup.create_node(f"/{USER}/race", name, "Artifact", extra="{}")
        errors: list[BaseException] = []
        final: dict[str, dict[str, bytes]] = {}

        def worker(n: int, node: str) -> None:
            rng = random.Random(n)
            api = HttpRemote(urls[n % 2], key)
            path = f"/{USER}/race/{node}"
            held: dict[str, bytes] = {}
            try:
                for _ in range(12):
                    keys = [f"k{rng.randrange(300):03d}" for _k in range(150)]
                    batch = {k: rng.choice(POOL) for k in keys}
                    ups = [Upload(k, md5_bytes(v), len(v), data=v) for k, v in batch.items()]
                    rng.shuffle(ups)
                    api.put_objects(path, ups)
                    held.update(batch)
                    gone = rng.sample(sorted(held), len(held) // 2)
                    api.delete_objects(path, gone)
                    for k in gone:
                        del held[k]
                final[path] = held
            except BaseException as err:
                errors.append(err)

        threads = [
            threading.Thread(target=worker, args=(i, n)) for i, n in enumerate(("x", "y", "z"))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for path, held in final.items():
            listed = {o.path: o.checksum for o in setup.list_objects(path)}
            assert listed == {k: md5_bytes(v) for k, v in held.items()}
            for k, v in list(held.items())[:40]:
                dest = tmp_path / "dl" / path.strip("/") / k
                setup.get_object(path, k, dest)
                assert dest.read_bytes() == v, (path, k)
        logs = "".join(s.logs() for s in pair.servers)
        assert " 500 " not in logs and "Traceback" not in logs, logs[-3000:]
