"""Listings a page at a time on both remotes, and the digest of listed rows: the same
answers as the whole listing and as content_digest, without holding it all at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

from conftest import USER, Remote

from manifest_tool.hashing import content_digest, rows_digest
from manifest_tool.remotes.base import Upload


def test_rows_digest_is_content_digest() -> None:
    files = [(f"d/{i:03d}-ключ.txt", i * 7, hashlib.md5(b"%d" % i).hexdigest()) for i in range(300)]
    refs = [("a-ref", "s3://bucket/x?y=1"), ('zz/"quoted"', "https://h/p")]
    dicts = [{"path": p, "size_bytes": s, "checksum": c} for p, s, c in reversed(files)]
    dicts += [{"path": p, "uri": u} for p, u in refs]
    assert rows_digest(files, refs) == content_digest(dicts)
    assert rows_digest([], []) == content_digest([])
    assert rows_digest(files[:1], []) != rows_digest(files[:1], refs[:1])


def test_objects_are_listed_a_page_at_a_time_on_both_remotes(
    remote: Remote, tmp_path: Path
) -> None:
    api = remote.api()
    api.create_node(f"/{USER}", f"pages-{tmp_path.name}", "Artifact")
    node = f"/{USER}/pages-{tmp_path.name}"
    count = 10_001 + 500  # past one page of 10,000
    uploads = [
        Upload(f"k/{i:05d}", hashlib.md5(b"").hexdigest(), 0, data=b"") for i in range(count)
    ]
    for start in range(0, count, 1000):
        api.put_objects(node, uploads[start : start + 1000])  # type: ignore[attr-defined]
    paged = list(api.iter_objects(node))  # type: ignore[attr-defined]
    assert [o.path for o in paged] == [u.key for u in uploads]
    assert paged == api.list_objects(node)
