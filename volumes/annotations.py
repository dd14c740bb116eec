"""Parse `volume:` and `sandbox` annotations from a script's leading comment block (pure Python).

    # sandbox
    # volume: training-data /tmp/data
    # volume: $workspace-cache cache
    # volume: models models (read-only)

A trailing `(read-only)` asks for a read-only mount even of a volume the job's user may write: the
job pins the committed generation and takes no lease. `parse` checks everything that can be checked from the text alone; `resolve` fills in
`$workspace` and `$args[...]` from a job and checks the resulting names. Both raise only
AnnotationError, whose message names the line and says what to change.
"""
from __future__ import annotations

import posixpath
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Union

from volumes.exceptions import AnnotationError

LANGUAGES: dict[str, str] = {"python": "#", "bash": "#", "typescript": "//", "javascript": "//"}
EXTENSIONS: dict[str, str] = {".py": "python", ".sh": "bash", ".ts": "typescript", ".js": "javascript"}

MAX_VOLUMES = 10
MAX_MOUNT_PATH = 1024
ABSOLUTE_ROOTS = ("/tmp", "/mnt", "/opt", "/home", "/data")

# Anchored with \A and \Z (not ^ and $, which accept a trailing newline); usable with re.search.
VOLUME_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,253}[A-Za-z0-9]\Z")
_NAME_CHAR_RE = re.compile(r"[A-Za-z0-9._-]")
_PLACEHOLDER_RE = re.compile(
    r"\$(?:(?P<workspace>workspace)(?![A-Za-z0-9_])|args\[(?P<key>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\])"
)
_VOLUME_TYPO_RE = re.compile(r"volumes?(?:\s|:|=|$)", re.IGNORECASE)
_SANDBOX_TYPO_RE = re.compile(r"sandbox(?:\s|:|=|$)", re.IGNORECASE)
_TOO_LONG_INT = 10**255
READ_ONLY = "(read-only)"
# A trailing "(...)" that looks like a try at a mount mode; any other "(...)" stays part of the path.
_MODE_TYPO_RE = re.compile(r"[ \t]\((?P<mode>[^()]*)\)\Z")
_MODE_WORDS = {"readonly", "ro", "read", "rw", "readwrite", "write", "writable", "writeable"}
_VOLUME_EXAMPLE = "`volume: <name> <mount_path>`, e.g. `volume: training-data data`"
_ROOTS_TEXT = "/tmp/, /mnt/, /opt/, /home/ or /data/"

# A template is literal text and placeholders: ("workspace", "$workspace") or ("args", "$args[a.b]").
_Part = Union[str, tuple[str, str]]


@dataclass(frozen=True)
class VolumeSpec:
    """One `volume:` line: a name template (may hold placeholders) and a normalised mount path."""

    name_template: str
    mount_path: str
    line: int
    read_only: bool = False


@dataclass(frozen=True)
class ScriptAnnotations:
    """Everything the leading comment block declares."""

    volumes: tuple[VolumeSpec, ...]
    sandbox: bool


@dataclass(frozen=True)
class ResolvedMount:
    """A volume with its final name, ready to be looked up or created."""

    name: str
    mount_path: str
    line: int
    read_only: bool = False


def language_for_filename(name: str) -> str:
    """Return the language of a script from its file extension (.py, .sh, .ts, .js)."""
    ext = posixpath.splitext(str(name))[1].lower()
    if ext not in EXTENSIONS:
        raise AnnotationError(
            f"cannot tell the language of {name!r} from its extension; rename it to end in .py, .sh, .ts or .js"
        )
    return EXTENSIONS[ext]


def _describe_char(ch: str) -> str:
    """Name a character for an error message, e.g. "'а' (U+0430 CYRILLIC SMALL LETTER A)"."""
    return f"{ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')})"


def _name_problem(name: str) -> str | None:
    """Say what is wrong with a volume name, or None when it is valid."""
    if not 2 <= len(name) <= 255:
        return f"must be 2 to 255 characters long, not {len(name)}"
    for ch in name:
        if not _NAME_CHAR_RE.fullmatch(ch):
            return (
                f"contains {_describe_char(ch)}; use only ASCII letters, digits, '.', '_' and '-'"
                + (" (this looks like an ASCII character but is not)" if ord(ch) > 127 else "")
            )
    if not (name[0].isascii() and name[0].isalnum() and name[-1].isascii() and name[-1].isalnum()):
        return "must start and end with an ASCII letter or digit"
    return None


def is_valid_volume_name(name: object) -> bool:
    """True when `name` is a valid volume name."""
    return isinstance(name, str) and VOLUME_NAME_RE.search(name) is not None


def validate_volume_name(name: str, line: int = 0) -> str:
    """Return `name` if it is a valid volume name, else raise AnnotationError saying why."""
    if not isinstance(name, str):
        raise AnnotationError(f"a volume name must be text, not {type(name).__name__}", line=line)
    problem = _name_problem(name)
    if problem is not None or not is_valid_volume_name(name):
        raise AnnotationError(
            f"volume name {name[:100]!r} {problem or 'is invalid'}, e.g. 'training-data'", line=line
        )
    return name


def _parse_template(template: str, line: int) -> list[_Part]:
    """Split a name template into literal text and placeholders; refuse unknown or malformed ones."""
    parts: list[_Part] = []
    pos = 0
    while (dollar := template.find("$", pos)) != -1:
        if dollar > pos:
            parts.append(template[pos:dollar])
        match = _PLACEHOLDER_RE.match(template, dollar)
        if match is None:
            rest = template[dollar:]
            if rest.startswith("$args"):
                raise AnnotationError(
                    f"malformed placeholder in volume name {template!r}; write `$args[param]` or "
                    "`$args[param.nested]` with letters, digits, '_' or '-' in each key",
                    line=line,
                )
            word = re.match(r"\$\{[A-Za-z0-9_]*\}?|\$[A-Za-z0-9_]*", rest)
            shown = word.group(0) if word else "$"
            raise AnnotationError(
                f"unknown placeholder `{shown}` in volume name {template!r}; "
                "use `$workspace` or `$args[param]`",
                line=line,
            )
        parts.append(("workspace", "$workspace") if match.group("workspace") else ("args", match.group(0)))
        pos = match.end()
    if pos < len(template):
        parts.append(template[pos:])
    return parts


def _check_template(template: str, line: int) -> None:
    """Validate a name template as far as possible before its placeholders are known."""
    parts = _parse_template(template, line)
    if all(isinstance(part, str) for part in parts):
        validate_volume_name(template, line)
        return
    for part in parts:
        if isinstance(part, str):
            for ch in part:
                if not _NAME_CHAR_RE.fullmatch(ch):
                    raise AnnotationError(
                        f"volume name {template!r} contains {_describe_char(ch)}; "
                        "use only ASCII letters, digits, '.', '_' and '-' around placeholders",
                        line=line,
                    )


def _normalise_mount_path(raw: str, sandbox: bool, line: int) -> str:
    """Check a mount path and return it normalised (no './', no trailing '/', no '..')."""
    if not raw:
        raise AnnotationError(f"the mount path is missing; write {_VOLUME_EXAMPLE}", line=line)
    if len(raw) > MAX_MOUNT_PATH:
        raise AnnotationError(
            f"the mount path is {len(raw)} characters long; the limit is {MAX_MOUNT_PATH}", line=line
        )
    for ch in raw:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise AnnotationError(
                f"the mount path contains the control character U+{ord(ch):04X}; remove it", line=line
            )
    if "\\" in raw:
        raise AnnotationError(
            f"mount path {raw!r} contains a backslash; use '/' to separate directories", line=line
        )
    if raw.startswith("~"):
        raise AnnotationError(
            f"mount path {raw!r} starts with '~', which is not expanded to a home directory; "
            "use a relative path like 'data' (or, with `# sandbox`, an absolute path under /home/)",
            line=line,
        )
    if raw.startswith("/"):
        norm = "/" + posixpath.normpath(raw).lstrip("/")
        allowed = any(norm.startswith(root + "/") for root in ABSOLUTE_ROOTS)
        if not (sandbox and allowed):
            shown = repr(raw) if norm == raw.rstrip("/") else f"{raw!r} (that is, {norm!r})"
            raise AnnotationError(
                f"absolute mount path {shown} needs `# sandbox` and must be strictly under {_ROOTS_TEXT}; "
                "use a relative path like 'data' instead",
                line=line,
            )
        return norm
    norm = posixpath.normpath(raw)
    if norm == ".":
        raise AnnotationError(
            f"mount path {raw!r} is the working directory itself; a volume needs its own directory, e.g. 'data'",
            line=line,
        )
    if norm == ".." or norm.startswith("../"):
        raise AnnotationError(
            f"mount path {raw!r} leads out of the working directory through '..'; "
            "use a path inside it, e.g. 'data'",
            line=line,
        )
    return norm


def _mount_mode(template: str, raw_path: str, line: int) -> tuple[str, bool]:
    """Split a trailing `(read-only)` off the mount path; refuse near misses like `(ro)` or `(readonly)`."""
    if raw_path == READ_ONLY:
        raise AnnotationError(
            f"volume {template!r} has no mount path before `{READ_ONLY}`; write "
            f"`volume: {template[:60]} <mount_path> {READ_ONLY}`, e.g. `volume: {template[:60]} data {READ_ONLY}`",
            line=line,
        )
    if raw_path.endswith(" " + READ_ONLY) or raw_path.endswith("\t" + READ_ONLY):
        return raw_path[:-len(READ_ONLY)].rstrip(), True
    typo = _MODE_TYPO_RE.search(raw_path)
    if typo and re.sub(r"[^a-z]", "", typo.group("mode").lower()) in _MODE_WORDS:
        raise AnnotationError(
            f"unknown mount mode `({typo.group('mode')})`; write exactly `{READ_ONLY}` after the mount path for a "
            "read-only mount, or nothing for the mode your access gives (read-write if you may write)",
            line=line,
        )
    return raw_path, False


def _leading_comments(content: str, prefix: str) -> list[tuple[int, str]]:
    """Return (line number, text after the prefix, stripped) for the leading comment block."""
    comments = []
    for number, line in enumerate(content.removeprefix("\ufeff").split("\n"), start=1):
        if number == 1 and line.startswith("#!"):
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith(prefix):
            break
        comments.append((number, stripped[len(prefix):].strip()))
    return comments


def parse(content: str, language: str) -> ScriptAnnotations:
    """Read the annotations of a script's leading comment block; raise AnnotationError when malformed."""
    if not isinstance(content, str):
        raise AnnotationError(f"the script must be text, not {type(content).__name__}")
    if language not in LANGUAGES:
        raise AnnotationError(f"unknown language {language!r}; use one of {', '.join(sorted(LANGUAGES))}")
    prefix = LANGUAGES[language]
    sandbox = False
    volume_lines: list[tuple[int, str]] = []
    for number, text in _leading_comments(content, prefix):
        if text == "sandbox":
            sandbox = True
        elif text.startswith("volume:"):
            volume_lines.append((number, text[len("volume:"):].strip()))
        elif _VOLUME_TYPO_RE.match(text):
            raise AnnotationError(
                f"comment {text[:60]!r} is not a valid annotation; did you mean `{prefix} volume: <name> <path>`? "
                f"(lowercase `volume:`; reword the comment if it is not an annotation)",
                line=number,
            )
        elif _SANDBOX_TYPO_RE.match(text):
            raise AnnotationError(
                f"comment {text[:60]!r} is not a valid annotation; write exactly `{prefix} sandbox` "
                "(nothing after it; reword the comment if it is not an annotation)",
                line=number,
            )
    volumes: list[VolumeSpec] = []
    for count, (number, rest) in enumerate(volume_lines, start=1):
        if count > MAX_VOLUMES:
            raise AnnotationError(
                f"a script may declare at most {MAX_VOLUMES} volumes; remove this one or merge volumes",
                line=number,
            )
        match = re.fullmatch(r"([^ \t]+)(?:[ \t]+(.*))?", rest)
        if match is None:
            raise AnnotationError(f"`volume:` needs a name and a mount path; write {_VOLUME_EXAMPLE}", line=number)
        template, raw_path = match.group(1), (match.group(2) or "").strip()
        _check_template(template, number)
        raw_path, read_only = _mount_mode(template, raw_path, number)
        if not raw_path:
            raise AnnotationError(
                f"volume {template!r} has no mount path; write `volume: {template[:60]} <mount_path>`, "
                f"e.g. `volume: {template[:60]} data`",
                line=number,
            )
        mount_path = _normalise_mount_path(raw_path, sandbox, number)
        for other in volumes:
            if other.mount_path == mount_path:
                raise AnnotationError(
                    f"mount path {raw_path!r} is the same directory as {mount_path!r} on line {other.line}; "
                    "give each volume its own directory",
                    line=number,
                )
            outer, inner = sorted((other.mount_path, mount_path), key=len)
            if inner.startswith(outer.rstrip("/") + "/"):
                raise AnnotationError(
                    f"mount path {mount_path!r} and {other.mount_path!r} on line {other.line} are nested; "
                    "volumes cannot be mounted inside each other, use sibling directories",
                    line=number,
                )
            if "$" not in template and other.name_template.lower() == template.lower():
                raise AnnotationError(
                    f"volume {template!r} is already declared on line {other.line} (names ignore case); "
                    "declare each volume once",
                    line=number,
                )
            if other.name_template == template:
                raise AnnotationError(
                    f"volume name {template!r} is already declared on line {other.line}; declare each volume once",
                    line=number,
                )
        volumes.append(VolumeSpec(template, mount_path, number, read_only))
    return ScriptAnnotations(volumes=tuple(volumes), sandbox=sandbox)


def _json_type(value: object) -> str:
    """Name a value's JSON type for an error message."""
    names = {bool: "a boolean", float: "a number", dict: "an object", list: "an array", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def _lookup_arg(args: object, placeholder: str, line: int) -> str:
    """Return the text of `$args[a.b]` from the job's arguments."""
    key = placeholder[len("$args["):-1]
    value: Any = args
    for depth, part in enumerate(key.split(".")):
        if not isinstance(value, dict) or part not in value:
            where = "the job's arguments" if depth == 0 else f"`$args[{'.'.join(key.split('.')[:depth])}]`"
            example = '{"' + key.split(".")[0] + '": ...}'
            raise AnnotationError(
                f"`{placeholder}` is not in the job's arguments ({part!r} is missing from {where}); "
                f"pass {example} or change the annotation",
                line=line,
            )
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise AnnotationError(
            f"`{placeholder}` is {_json_type(value)}; only strings and integers can go into a volume name",
            line=line,
        )
    if isinstance(value, int):
        if abs(value) >= _TOO_LONG_INT:
            raise AnnotationError(f"`{placeholder}` is an integer too long for a volume name", line=line)
        return str(value)
    return value


def resolve(annotations: ScriptAnnotations, workspace: str, args: dict) -> list[ResolvedMount]:
    """Fill `$workspace` and `$args[...]` into each name template and check the final names."""
    mounts: list[ResolvedMount] = []
    seen: dict[str, ResolvedMount] = {}
    for spec in annotations.volumes:
        pieces: list[str] = []
        used: list[str] = []
        for part in _parse_template(spec.name_template, spec.line):
            if isinstance(part, str):
                pieces.append(part)
                continue
            kind, placeholder = part
            value = str(workspace) if kind == "workspace" else _lookup_arg(args, placeholder, spec.line)
            pieces.append(value)
            used.append(f"`{placeholder}` = {value[:80]!r}")
        name = "".join(pieces)
        problem = _name_problem(name)
        if problem is not None or not is_valid_volume_name(name):
            origin = f" (made from {', '.join(used)})" if used else ""
            raise AnnotationError(
                f"volume name {name[:300]!r}{origin} {problem or 'is invalid'}; "
                "change the argument or the annotation",
                line=spec.line,
            )
        previous = seen.get(name.lower())
        if previous is not None:
            raise AnnotationError(
                f"volume name {name!r} is also used on line {previous.line} as {previous.name!r} "
                "(names ignore case); each volume can be mounted once, change the arguments or the annotation",
                line=spec.line,
            )
        mount = ResolvedMount(name, spec.mount_path, spec.line, spec.read_only)
        seen[name.lower()] = mount
        mounts.append(mount)
    return mounts
