"""Object keys of the volume layout, and the one check for user-supplied paths inside a volume.

    volumes/<workspace_id>/<volume_name>/blobs/<sha256 hex>
    volumes/<workspace_id>/<volume_name>/manifests/<name>.json
"""
from __future__ import annotations

import re
import unicodedata

from ..exceptions import InvalidName, InvalidPath

MAX_NAME_BYTES = 255  # one path component, in UTF-8
MAX_PATH_BYTES = 4096  # a whole path, in UTF-8

# After the server's one decode no percent-escape may be left: it would mean a doubly encoded
# path (`%252e%252e` -> `%2e%2e`), which some later layer might decode into a traversal, or bytes
# that were not UTF-8 (Django re-escapes those). Refusing every escape, not only dot, slash,
# backslash and NUL, keeps the rule simple; a literal `%` not followed by two hex digits is fine.
_ENCODED = re.compile(r"%[0-9a-f]{2}", re.IGNORECASE)
# Control characters (newlines, escapes) are refused too: they would forge log lines and cannot go
# into a Content-Disposition header. Jobs may still create such names; the API refuses them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _check_component(value: str, what: str) -> str:
    """One key component: non-empty, no '/', '\\', control characters, not '.' or '..'."""
    if not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value:
        raise InvalidName(f"{what} {value!r} cannot be used in a storage key: it must be one plain name")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise InvalidName(f"{what} {value!r} contains a control character or is not valid text")
    return value


def volume_prefix(workspace_id: str, volume_name: str) -> str:
    """`volumes/<workspace_id>/<volume_name>/`: everything of one volume lives under this prefix."""
    _check_component(workspace_id, "workspace id")
    _check_component(volume_name, "volume name")
    return f"volumes/{workspace_id}/{volume_name}/"


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix.endswith("/") or prefix.startswith("/"):
        raise ValueError(f"a key prefix must be relative and end with '/', got {prefix!r}")
    return prefix


def blob_key(prefix: str, hexdigest: str) -> str:
    """`<prefix>blobs/<sha256>`; the digest must be 64 lowercase hex characters."""
    if not isinstance(hexdigest, str) or not _SHA256_HEX.fullmatch(hexdigest):
        raise ValueError(f"{hexdigest!r} is not a SHA-256 digest (64 lowercase hex characters)")
    return f"{_check_prefix(prefix)}blobs/{hexdigest}"


def manifest_key(prefix: str, name: str) -> str:
    """`<prefix>manifests/<name>` for one generation's manifest file name."""
    return f"{_check_prefix(prefix)}manifests/{_check_component(name, 'manifest name')}"


def safe_relpath(path: str, allow_root: bool = False) -> str:
    """Normalise a user-supplied path inside a volume, or raise InvalidPath saying why.

    Empty and '.' components collapse ('a//./b/' -> 'a/b'). Refused: absolute paths, '..'
    anywhere, backslashes, NUL and other control characters, text that is not valid UTF-8
    (lone surrogates), a component over 255 UTF-8 bytes, a path over 4096. Percent escapes are
    not decoded here, and names are never Unicode-normalised. The empty path (the volume's
    root) is only accepted with allow_root=True and is returned as ''.
    """
    if not isinstance(path, str):
        raise InvalidPath(f"a path must be text, not {type(path).__name__}")
    shown = repr(path[:200]) + ("..." if len(path) > 200 else "")
    if len(path) > MAX_PATH_BYTES:
        raise InvalidPath(f"the path {shown} is too long: at most {MAX_PATH_BYTES} bytes")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath(f"the path {shown} is not valid UTF-8 text") from None
    if "\x00" in path:
        raise InvalidPath(f"the path {shown} contains a NUL character")
    if any(unicodedata.category(ch) == "Cc" for ch in path):
        raise InvalidPath(f"the path {shown} contains a control character (newline, tab, ...)")
    if "\\" in path:
        raise InvalidPath(f"the path {shown} contains a backslash; separate folders with '/'")
    if path.startswith("/"):
        raise InvalidPath(f"the path {shown} is absolute; give a path relative to the volume")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidPath(f"the path {shown} contains '..'; paths may not leave their folder")
    for part in parts:
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise InvalidPath(f"the name {part[:60]!r}... in the path is longer than {MAX_NAME_BYTES} bytes")
    clean = "/".join(parts)
    if len(clean.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidPath(f"the path {shown} is too long: at most {MAX_PATH_BYTES} bytes")
    if not clean and not allow_root:
        raise InvalidPath("the path is empty; name a file or folder inside the volume")
    return clean


def clean_path(raw: str, allow_root: bool = False) -> str:
    """A path from the API or the CLI, checked strictly: what could escape or was encoded twice is refused,
    never normalised (`safe_relpath` then normalises the rest); InvalidPath (400) saying why."""
    if not isinstance(raw, str):
        raise InvalidPath("a path must be a string")
    if _ENCODED.search(raw):
        raise InvalidPath(
            f"{raw[:200]!r} still contains a percent-escape after decoding (double encoding?); "
            "encode paths exactly once"
        )
    if _CONTROL.search(raw):
        raise InvalidPath(f"{raw[:200]!r} contains a control character; paths given to the API may not")
    if allow_root and raw == "":
        return safe_relpath(raw, allow_root=True)
    # Checked here as well as in safe_relpath: the API refuses, never normalises, what could escape.
    if raw.startswith("/") or "\\" in raw:
        raise InvalidPath(f"{raw[:200]!r} is absolute or has a backslash; give a path relative to the volume")
    parts = raw.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidPath(f"{raw[:200]!r} has an empty, '.' or '..' segment; give a plain relative path")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES or any(
        len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts
    ):
        raise InvalidPath(
            f"the path is too long: at most {MAX_NAME_BYTES} bytes per name and {MAX_PATH_BYTES} bytes in all"
        )
    return safe_relpath(raw, allow_root=allow_root)
