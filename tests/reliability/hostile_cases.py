"""Tables of hostile input for tests/reliability/test_hostile.py, and the tally that counts them.

Every row is one case of the report card's "cases passed". A case passes when the product
answers clearly (an error it raises on purpose, or a 4xx), never with a 5xx or an unexpected
exception, and leaves everything outside the volume byte-identical ("outside touches" = 0).
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

LIMIT = 52_428_800  # community edition: bytes per file


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Annotations ------------------------------------------------------------------------------------
# (case, script lines after the '#'/'//' prefix is filled in, language, job args); every one must
# raise AnnotationError naming a line, from parse() or from resolve().
ANNOTATION_CASES = [
    ("name with a slash", ["{c} volume: ../etc data"], "python", {}),
    ("mount path escaping with ..", ["{c} volume: vol-a ../../etc"], "python", {}),
    ("mount path a/../../b", ["{c} volume: vol-a a/../../b"], "typescript", {}),
    ("absolute mount without sandbox", ["{c} volume: vol-a /tmp/data"], "python", {}),
    ("absolute mount outside the roots", ["{c} sandbox", "{c} volume: vol-a /etc/cron.d"], "python", {}),
    ("absolute mount on a root itself", ["{c} sandbox", "{c} volume: vol-a /tmp"], "bash", {}),
    ("absolute mount escaping a root", ["{c} sandbox", "{c} volume: vol-a /tmp/../etc"], "python", {}),
    ("mount path with a backslash", ["{c} volume: vol-a ..\\..\\windows"], "javascript", {}),
    ("mount path with NUL", ["{c} volume: vol-a data\x00x"], "python", {}),
    ("mount path with a carriage return", ["{c} volume: vol-a da\rta"], "python", {}),
    ("mount path with an escape character", ["{c} volume: vol-a da\x1bta"], "python", {}),
    ("mount path starting with ~", ["{c} volume: vol-a ~/data"], "python", {}),
    ("mount path over 1024 characters", ["{c} volume: vol-a " + "d" * 1025], "python", {}),
    ("name with U+2024 ONE DOT LEADER", ["{c} volume: vol\u2024a data"], "python", {}),
    ("name with U+FF0F FULLWIDTH SOLIDUS", ["{c} volume: vol\uff0fa data"], "python", {}),
    ("name with a Cyrillic look-alike", ["{c} volume: d\u0430ta data"], "python", {}),
    ("name over 255 characters", ["{c} volume: " + "n" * 256 + " data"], "python", {}),
    ("name of one character", ["{c} volume: n data"], "python", {}),
    ("name starting with '-'", ["{c} volume: -rf data"], "bash", {}),
    ("name with percent-encoded dots", ["{c} volume: %2e%2e data"], "python", {}),
    ("eleven volumes", [f"{{c}} volume: vol-{i:02d} d{i}" for i in range(11)], "python", {}),
    ("names equal ignoring case", ["{c} volume: Data-1 a", "{c} volume: data-1 b"], "python", {}),
    ("one mount path twice", ["{c} volume: vol-a data", "{c} volume: vol-b ./data/"], "python", {}),
    ("nested mount paths", ["{c} volume: vol-a data", "{c} volume: vol-b data/inner"], "python", {}),
    ("unknown placeholder", ["{c} volume: $env-cache data"], "python", {}),
    ("$args value with a traversal", ["{c} volume: $args[v] data"], "python", {"v": "../../etc"}),
    ("$args value that is an object", ["{c} volume: $args[v] data"], "python", {"v": {"a": 1}}),
    ("$args value that is a huge integer", ["{c} volume: $args[v] data"], "python", {"v": 10**300}),
    ("$args values equal ignoring case", ["{c} volume: $args[a] x", "{c} volume: $args[b] y"], "python",
     {"a": "Vol-1", "b": "vol-1"}),
]

# Volume names sent to the API and the dashboard: (case, name, API status expected on create).
VOLUME_NAME_CASES = [
    ("traversal", "../escape", 400),
    ("slash", "a/b", 400),
    ("backslash", "a\\b", 400),
    ("NUL", "ab\x00cd", 400),
    ("U+2024 look-alike dot", "ab\u2024cd", 400),
    ("fullwidth solidus", "ab\uff0fcd", 400),
    ("Cyrillic look-alike", "tr\u0430ining", 400),
    ("256 characters", "v" * 256, 400),
    ("percent-encoded dots", "%2e%2e", 400),
    ("dot-dot", "..", 400),
    ("markup", "<script>x</script>", 400),
    ("same name in other case", "TRAINING-DATA", 409),
]

# Paths as sent on the wire to /api/.../files/<path> (the server decodes %XX once). Each must get 400
# from GET, PUT and DELETE. Complements tests/api/test_hostile_paths.py with other spellings.
API_PATH_CASES = [
    ("dot-dot-slash with dot segments", "./a/./../../sentinel.txt"),
    ("mixed-case encoded dot-dot", "%2E%2e/%2e%2E/sentinel.txt"),
    ("encoded backslash traversal", "..%5C..%5Csentinel.txt"),
    ("triple-encoded slash", "a%25252f..%25252fsentinel.txt"),
    ("encoded NUL", "data.bin%00"),
    ("NUL then dot-dot", "%00/../sentinel.txt"),
    ("encoded newline", "a%0Ab"),
    ("encoded DEL", "a%7Fb"),
    ("overlong UTF-8 slash", "a%c0%afb"),
    ("invalid UTF-8 byte", "a%ffb"),
    ("lone surrogate in UTF-8", "a%ed%a0%80b"),
    ("255-byte limit with 2-byte letters", "%C3%A9" * 128),
    ("component of 256 ASCII bytes", "z" * 256),
    ("path over 4096 bytes", "/".join(["deep"] * 900)),
    ("trailing dot-dot", "a/b/.."),
    ("absolute with encoded slash", "%2Fsentinel.txt"),
]

# Names that look like separators or dots but are other characters: kept as one literal name,
# never normalised (NFKC would turn some of them into '..' or '/').
LOOKALIKE_NAMES = [
    ("U+2024 ONE DOT LEADER twice", "\u2024\u2024"),
    ("fullwidth solidus between dots", "..\uff0f..\uff0fsentinel.txt"),
    ("U+2025 TWO DOT LEADER", "\u2025"),
    ("fullwidth full stops", "\uff0e\uff0e"),
    ("ligature fi (NFKC changes it)", "\ufb01le.txt"),
    ("division slash", "a\u2215b"),
]

# Dashboard (browser) paths: `?path=` values and upload names. Each must get a 4xx, never a 5xx.
BROWSER_PATHS = [
    ("dot-dot traversal", "../../sentinel.txt"),
    ("absolute with dot-dot", "//../sentinel.txt"),
    ("backslash", "..\\..\\sentinel.txt"),
    ("NUL", "data.bin\x00.png"),
    ("newline", "a\nb"),
    ("256-byte name", "q" * 256),
    ("dot-dot inside", "a/../../b"),
    ("path over 4096 bytes", "/".join(["deep"] * 900)),
]

# Range headers for a 1,000-byte file: (case, header, allowed statuses).
RANGE_CASES = [
    ("hundreds of ranges", "bytes=" + ",".join(f"{i}-{i}" for i in range(500)), {200, 206, 416}),
    ("hundreds of overlapping ranges", "bytes=" + ",".join("0-999" for _ in range(300)), {200, 206, 416}),
    ("thousands of suffix ranges", "bytes=" + ",".join("-1" for _ in range(2000)), {200, 206, 416}),
    ("two ranges", "bytes=0-1,5-6", {200, 206}),
    ("one range", "bytes=10-19", {206}),
    ("range past the end", "bytes=5000-6000", {416}),
    ("huge numbers", "bytes=0-99999999999999999999999999999", {206}),
    ("reversed range", "bytes=9-1", {200}),
    ("malformed", "bytes=abc", {200}),
    ("other unit", "items=0-5", {200}),
    ("empty suffix", "bytes=-0", {416}),
]


# The tally ---------------------------------------------------------------------------------------

@dataclass
class Tally:
    passed: int = 0
    failures: list[str] = field(default_factory=list)
    server_errors: int = 0
    outside_touches: int = 0

    def case(self, group: str, name: str, ok: bool, detail: object = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(f"{group}: {name}: {detail}")
        return ok

    def failures_of(self, group: str) -> list[str]:
        return [f for f in self.failures if f.startswith(group + ":")]


# Sentinels just outside a volume -------------------------------------------------------------------

def snapshot(root: Path, skip: list[Path]) -> dict[str, tuple]:
    """Every entry under root except those under `skip`, by type, mode, size, mtime and bytes."""
    skipped = [str(p) for p in skip]
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if full in skipped:
                continue
            st = os.lstat(full)
            content = None
            if os.path.islink(full):
                content = os.readlink(full)
            elif os.path.isfile(full):
                with open(full, "rb") as fh:
                    content = fh.read()
            if stat.S_ISDIR(st.st_mode):  # a folder's own mtime changes when a neighbour is created
                found[full] = (st.st_mode,)
            else:
                found[full] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return found


def touched(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# Storage settings an admin might use to probe the server (issue 19): (case, storage URL or
# (kind, config)); the base folder is "{base}" and the admin's own workspace folder "{base}/acme".
# Each must be refused (API 400, dashboard form 422) before anything is created or connected to.
STORAGE_PROBE_CASES = [
    ("the workspace's own storage root", "file://{storage_root}"),
    ("the folder above the storage root", "file://{tmp}"),
    ("a system folder", "file:///etc"),
    ("the base folder itself", "file://{base}"),
    ("another workspace's folder", "file://{base}/beta"),
    ("a sibling folder sharing the prefix text", "file://{base}/acme-2"),
    ("escaping the workspace folder with ..", "file://{base}/acme/../beta"),
    ("S3 on 127.0.0.1", "s3://bucket-a?endpoint_url=http://127.0.0.1:9000&access_key=a&secret_key=b"),
    ("S3 on localhost", "s3://bucket-a?endpoint_url=http://localhost:9000&access_key=a&secret_key=b"),
    ("S3 on 127.1 shorthand", "s3://bucket-a?endpoint_url=http://127.1:9000&access_key=a&secret_key=b"),
    ("S3 on a decimal loopback address", "s3://bucket-a?endpoint_url=http://2130706433:9000&access_key=a&secret_key=b"),
    ("S3 on the IPv6 loopback", "s3://bucket-a?endpoint_url=http://[::1]:9000&access_key=a&secret_key=b"),
    ("S3 on an IPv4-mapped loopback", "s3://bucket-a?endpoint_url=http://[::ffff:127.0.0.1]:9000&access_key=a&secret_key=b"),
    ("S3 on 0.0.0.0", "s3://bucket-a?endpoint_url=http://0.0.0.0:9000&access_key=a&secret_key=b"),
    ("S3 on the cloud metadata address", "s3://bucket-a?endpoint_url=http://169.254.169.254&access_key=a&secret_key=b"),
    ("S3 with the server's own AWS identity", "s3://bucket-a"),
    ("S3 endpoint with a file: scheme", "s3://bucket-a?endpoint_url=file:///etc/passwd&access_key=a&secret_key=b"),
    ("Azure development storage", "az://container-a?connection_string=UseDevelopmentStorage%3Dtrue"),
    ("Azure account name that is a host", "az://container-a?account_name=127.0.0.1:80/x&account_key=a2V5"),
    ("GCS emulator on localhost", "gs://bucket-a?endpoint=http://localhost:4443"),
    ("GCS with the server's own Google identity", "gs://bucket-a"),
    ("NUL in a folder", "file://{base}/acme/a%00b"),
    ("a 10,000-character bucket", "s3://" + "b" * 10_000),
]
