"""An object's content type is the one its name suggests, whatever the cache does."""

from __future__ import annotations

import mimetypes

import pytest

from manifest_tool.remotes.store import _content_type

NAMES = [
    "a/b.txt", "x.tar.gz", "README", "d/.hidden", "a.b.c.JPG", "dir.v1/file", "x.json",
    "weird.", "..", "a/b.TXT", "m/model.safetensors", "img/p.png", "deep/a.b/c.d.csv",
]  # fmt: skip


@pytest.mark.parametrize("key", NAMES)
def test_the_type_is_what_the_name_suggests(key: str) -> None:
    expected = mimetypes.guess_type(key)[0] or "application/octet-stream"
    assert _content_type(key) == expected
    assert _content_type(key) == expected  # and again, from the cache
