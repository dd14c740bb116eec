"""Storage keys of the volume layout, and safe_relpath: the one check for paths inside a volume."""
from __future__ import annotations

import posixpath

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from volumes.exceptions import InvalidName, InvalidPath
from volumes.storage.keys import blob_key, manifest_key, safe_relpath, volume_prefix

DIGEST = "0123456789abcdef" * 4


def test_layout():
    prefix = volume_prefix("acme", "training-data")
    assert prefix == "volumes/acme/training-data/"
    assert blob_key(prefix, DIGEST) == f"volumes/acme/training-data/blobs/{DIGEST}"
    assert manifest_key(prefix, "00000001-abc.json") == "volumes/acme/training-data/manifests/00000001-abc.json"


@pytest.mark.parametrize("digest", ["", DIGEST.upper(), DIGEST[:-1], DIGEST + "0", "g" * 64, "../" + DIGEST[3:], None])
def test_blob_key_wants_a_lowercase_sha256(digest):
    with pytest.raises(ValueError):
        blob_key("volumes/a/b/", digest)


@pytest.mark.parametrize("prefix", ["volumes/a/b", "/volumes/a/b/", ""])
def test_keys_want_a_relative_prefix_ending_in_a_slash(prefix):
    with pytest.raises(ValueError):
        blob_key(prefix, DIGEST)
    with pytest.raises(ValueError):
        manifest_key(prefix, "1.json")


@pytest.mark.parametrize("workspace,name", [("", "v"), ("a/b", "v"), ("..", "v"), ("w", "."), ("w", "a\\b"),
                                            ("w", "a\nb"), ("w", "")])
def test_volume_prefix_refuses_anything_but_one_plain_name(workspace, name):
    with pytest.raises(InvalidName):
        volume_prefix(workspace, name)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b"])
def test_manifest_name_is_one_plain_name(name):
    with pytest.raises(InvalidName):
        manifest_key("volumes/a/b/", name)


@pytest.mark.parametrize("raw,clean", [
    ("a", "a"),
    ("a/b/c.txt", "a/b/c.txt"),
    ("./a", "a"),
    ("a/./b", "a/b"),
    ("a//b///c", "a/b/c"),
    ("a/b/", "a/b"),
    ("a..b", "a..b"),
    ("..a", "..a"),
    ("b..", "b.."),
    ("...", "..."),
    (" space ", " space "),
    ("50%off.txt", "50%off.txt"),
    ("%2e%2e", "%2e%2e"),  # not decoded here: the caller decodes exactly once
    ("ünïcödé/ファイル.txt", "ünïcödé/ファイル.txt"),
    ("ﬁ", "ﬁ"),  # never NFKC-normalised (it would become 'fi')
    ("e\u0301", "e\u0301"),  # nor NFC
    ("x" * 255, "x" * 255),
    ("é" * 127, "é" * 127),  # 254 bytes
])
def test_safe_relpath_accepts_and_normalises(raw, clean):
    assert safe_relpath(raw) == clean
    assert safe_relpath(clean) == clean


@pytest.mark.parametrize("raw,why", [
    ("", "empty"),
    (".", "empty"),
    ("./", "empty"),
    ("//", "absolute"),
    ("/etc/passwd", "absolute"),
    ("..", "'..'"),
    ("../x", "'..'"),
    ("a/../b", "'..'"),
    ("a/..", "'..'"),
    ("a\\b", "backslash"),
    ("..\\x", "backslash"),
    ("a\x00b", "NUL"),
    ("a\nb", "control"),
    ("a\tb", "control"),
    ("a\x7fb", "control"),
    ("a\x85b", "control"),
    ("bad\udcffname", "UTF-8"),
    ("x" * 256, "255 bytes"),
    ("é" * 128, "255 bytes"),  # 256 bytes in UTF-8
    ("/".join(["abcd"] * 1000), "too long"),
    ("a/" * 2049, "too long"),
])
def test_safe_relpath_refuses_with_a_clear_message(raw, why):
    with pytest.raises(InvalidPath) as info:
        safe_relpath(raw)
    assert why in str(info.value)


def test_the_root_only_with_allow_root():
    assert safe_relpath("", allow_root=True) == ""
    assert safe_relpath(".", allow_root=True) == ""
    assert safe_relpath("a/b/", allow_root=True) == "a/b"
    with pytest.raises(InvalidPath):
        safe_relpath("/", allow_root=True)
    with pytest.raises(InvalidPath):
        safe_relpath("..", allow_root=True)


def test_not_text_is_refused():
    with pytest.raises(InvalidPath):
        safe_relpath(b"a")  # type: ignore[arg-type]


PIECES = st.sampled_from(["..", ".", "/", "//", "\\", "%2e", "%2f", "%00", "\x00", "\n", "a", "é", "ﬁ", " "])
HOSTILE_TEXT = st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=12).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), HOSTILE_TEXT))
@example("../../etc/passwd")
@example("a/../../b")
@example("..%2f..")
def test_a_safe_path_always_stays_under_its_prefix(raw):
    prefix = volume_prefix("w", "v")
    try:
        clean = safe_relpath(raw)
    except InvalidPath:
        return
    key = prefix + clean
    assert posixpath.normpath(key) == key  # nothing left to collapse
    assert posixpath.normpath(key).startswith(prefix) and len(key) > len(prefix)
    assert "\\" not in clean and "\x00" not in clean and not clean.startswith("/")
    assert all(part not in ("", ".", "..") for part in clean.split("/"))
    assert safe_relpath(clean) == clean  # idempotent
    clean.encode("utf-8")
