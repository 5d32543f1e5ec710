"""Object-path rules: T9k's obj_path examples, plus the checks T9k lacks."""

from __future__ import annotations

import pytest

from manifest_tool.paths import check_key, join_key, resolve_obj_path


@pytest.mark.parametrize(
    ("obj_path", "key"),
    [(None, "1.png"), ("", "1.png"), ("1.png", "1.png"), ("a/", "a/1.png"), ("a/1.png", "a/1.png")],
)
def test_seed_add_file_examples(obj_path: str | None, key: str) -> None:
    assert resolve_obj_path("1.png", obj_path) == key


@pytest.mark.parametrize(
    ("obj_path", "key"), [(None, "a"), ("a", "a"), ("b/", "b/a"), ("b/a", "b/a")]
)
def test_seed_add_dir_examples(obj_path: str | None, key: str) -> None:
    assert resolve_obj_path("a/", obj_path) == key


@pytest.mark.parametrize(
    ("obj_path", "key"), [("/x.png", "x.png"), ("/a/", "a/1.png"), ("/a/b.png", "a/b.png")]
)
def test_one_leading_slash_is_dropped(obj_path: str, key: str) -> None:
    assert resolve_obj_path("1.png", obj_path) == key


def test_only_one_leading_slash_is_dropped() -> None:
    with pytest.raises(ValueError, match="absolute"):
        resolve_obj_path("1.png", "//a/1.png")


def test_source_basename_ignores_its_directories() -> None:
    assert resolve_obj_path("data/train/1.png", None) == "1.png"
    assert resolve_obj_path("data/train/", "x/") == "x/train"


@pytest.mark.parametrize(
    ("uri", "obj_path", "key"),
    [
        ("https://example.org/mnist.tar.gz", None, "mnist.tar.gz"),
        ("https://example.org/d/mnist.tar.gz?sig=1#frag", None, "mnist.tar.gz"),
        ("https://example.org/mnist.tar.gz", "raw/", "raw/mnist.tar.gz"),
        ("s3://bucket/prefix/", None, "prefix"),
        ("https://example.org/mnist.tar.gz", "/raw/m.tgz", "raw/m.tgz"),
    ],
)
def test_reference_keys(uri: str, obj_path: str | None, key: str) -> None:
    assert resolve_obj_path(uri, obj_path) == key


@pytest.mark.parametrize(
    "obj_path",
    ["../x", "a/../../x", "a/..", "a//b", "./a", "a/./b", "a\\b", "a\x00b"],
)
def test_escaping_or_empty_segments_are_refused(obj_path: str) -> None:
    with pytest.raises(ValueError):
        resolve_obj_path("1.png", obj_path)


@pytest.mark.parametrize("obj_path", ["metadata.yaml", "references.yaml", "/metadata.yaml"])
def test_reserved_root_names_are_refused(obj_path: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        resolve_obj_path("1.png", obj_path)


def test_reserved_names_are_fine_below_the_root() -> None:
    assert resolve_obj_path("1.png", "sub/metadata.yaml") == "sub/metadata.yaml"
    assert resolve_obj_path("metadata.yaml", "sub/") == "sub/metadata.yaml"


def test_a_source_named_like_a_reserved_file_needs_a_folder() -> None:
    with pytest.raises(ValueError, match="reserved"):
        resolve_obj_path("cfg/metadata.yaml", None)


def test_check_key_allows_reserved_for_the_store() -> None:
    assert check_key("metadata.yaml", allow_reserved=True) == "metadata.yaml"
    with pytest.raises(ValueError):
        check_key("metadata.yaml")


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", ".", ".."])
def test_check_key_refuses(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key, allow_reserved=True)


def test_join_key() -> None:
    assert join_key("", "a/b") == "a/b"
    assert join_key("p", "a/b") == "p/a/b"
