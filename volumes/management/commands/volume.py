"""`manage.py volume ls|get|put|rm|history|restore|create`: volumes from the command line.

On the server it acts as `--user USER` through the same services and permission checks
as the API (each change takes the lease and commits a generation). With
`--server URL --token TOKEN` it does the same through the REST API of a remote server.
Transfers show progress bars on a terminal.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO, Callable, Iterator
from urllib.parse import quote

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from volumes.exceptions import NotFound, VolumesError

Advance = Callable[[int], None]
CHUNK = 1024 * 1024


def _clean(path: str, allow_root: bool = False) -> str:
    """The same path checks as the API, before anything is sent or read."""
    from volumes.api.access import clean_path

    return clean_path(path, allow_root=allow_root)


# Backends: the same verbs against this server's services or a remote server's API --------------

class LocalBackend:
    """Acts as a user of this server through the services, with the API's permission checks."""

    def __init__(self, workspace: str, username: str) -> None:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"user {username!r} does not exist")
        self.ws, self.user = workspace, user
        self.request = SimpleNamespace(user=user)

    def _volume(self, name: str, need: str = "see"):
        from volumes.api import access

        return access.volume(self.request, self.ws, name, need)[0]

    def volumes(self) -> list[dict]:
        from volumes import selectors
        from volumes.api import access
        from volumes.api.serializers import VolumeSerializer

        workspace, _ = access.workspace(self.request, self.ws)
        return VolumeSerializer(selectors.volume_list_for_user(self.user, workspace), many=True).data

    def create(self, name: str) -> None:
        from volumes.api import access
        from volumes.services.volumes import volume_create

        workspace, _ = access.workspace(self.request, self.ws)
        volume_create(workspace, name, owner=self.user)

    def folder(self, name: str, path: str) -> list[dict]:
        from volumes.api.serializers import EntrySerializer
        from volumes.services import files

        return EntrySerializer(files.list_folder(self._volume(name), path), many=True).data

    def entry(self, name: str, path: str) -> dict:
        from volumes.api.serializers import EntrySerializer
        from volumes.services import files

        return EntrySerializer(files.entry_at(self._volume(name), path)).data

    def download(self, name: str, path: str, out: BinaryIO, advance: Advance) -> None:
        from volumes.services import files

        volume = self._volume(name)
        entry = files.entry_at(volume, path)
        for chunk in files.open_file(volume, entry):
            out.write(chunk)
            advance(len(chunk))

    def upload(self, name: str, path: str, local: Path, advance: Advance) -> None:
        from volumes.services import files

        volume = self._volume(name, "write")
        with open(local, "rb") as fh:
            files.file_put(volume, path, _Counting(fh, local.stat().st_size, advance), user=self.user)

    def delete(self, name: str, path: str) -> int:
        from volumes.services import files

        return files.file_delete(self._volume(name, "write"), path, user=self.user)

    def delete_volume(self, name: str) -> None:
        from volumes.services.volumes import volume_delete

        volume_delete(self._volume(name, "delete"), user=self.user)

    def history(self, name: str) -> list[dict]:
        from volumes import selectors
        from volumes.api.serializers import CommitSerializer

        return CommitSerializer(selectors.volume_history(self._volume(name)), many=True).data

    def restore(self, name: str, generation: int) -> int:
        from volumes.services import files

        return files.generation_restore(self._volume(name, "write"), generation, user=self.user)


class RemoteBackend:
    """The same verbs through the REST API of a server (`--server URL --token TOKEN`)."""

    def __init__(self, server: str, token: str, workspace: str) -> None:
        from volumes.agent import ApiClient

        self.client = ApiClient(server, token, workspace)

    @staticmethod
    def _v(name: str, rest: str = "") -> str:
        return f"volumes/{quote(name, safe='')}/{rest}"

    @staticmethod
    def _p(path: str) -> str:
        return quote(path, safe="/")

    def volumes(self) -> list[dict]:
        return self.client.json("GET", "volumes/")

    def create(self, name: str) -> None:
        self.client.json("POST", "volumes/", json={"name": name})

    def folder(self, name: str, path: str) -> list[dict]:
        return self.client.json("GET", self._v(name, f"files/{self._p(path)}/" if path else "files/"))["entries"]

    def entry(self, name: str, path: str) -> dict:
        parent, _, base = path.rpartition("/")
        for entry in self.folder(name, parent):
            if entry["path"] == path:
                return entry
        raise NotFound(f"{path!r} does not exist in volume {name!r}")

    def download(self, name: str, path: str, out: BinaryIO, advance: Advance) -> None:
        response = self.client.request("GET", self._v(name, f"files/{self._p(path)}"), stream=True)
        with response:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                advance(len(chunk))

    def upload(self, name: str, path: str, local: Path, advance: Advance) -> None:
        with open(local, "rb") as fh:
            self.client.request(
                "PUT", self._v(name, f"files/{self._p(path)}"), data=_Counting(fh, local.stat().st_size, advance),
                headers={"Content-Type": "application/octet-stream"},
            )

    def delete(self, name: str, path: str) -> int:
        return self.client.json("DELETE", self._v(name, f"files/{self._p(path)}"))["generation"]

    def delete_volume(self, name: str) -> None:
        self.client.request("DELETE", self._v(name))

    def history(self, name: str) -> list[dict]:
        rows, offset = [], 0
        while True:
            page = self.client.json("GET", self._v(name, "history/"), params={"limit": 1000, "offset": offset})
            rows += page["results"]
            if not page.get("next"):
                return rows
            offset += 1000

    def restore(self, name: str, generation: int) -> int:
        return self.client.json("POST", self._v(name, f"history/{generation}/restore/"))["generation"]


class _Counting:
    """A file wrapper that reports bytes read, with a length so HTTP uploads send Content-Length."""

    def __init__(self, fh: BinaryIO, size: int, advance: Advance) -> None:
        self.fh, self.size, self.advance = fh, size, advance

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        chunk = self.fh.read(n)
        self.advance(len(chunk))
        return chunk


# The command ------------------------------------------------------------------------------------

class Command(BaseCommand):
    help = "List, download, upload, delete and restore volume files, here (--user) or remotely (--server/--token)."
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument("--workspace", "-w", required=True)
        parser.add_argument("--user", "-u", help="Act as this user (on the server itself)")
        parser.add_argument("--server", help="A remote server's base URL; use with --token")
        parser.add_argument("--token", default=os.environ.get("VOLUMES_TOKEN", ""),
                            help="API token for --server (or set VOLUMES_TOKEN)")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table")
        parser.add_argument("--quiet", "-q", action="store_true", help="No progress bars")
        verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

        ls = verbs.add_parser("ls", help="List volumes, or a folder: ls [VOLUME[:PATH]]")
        ls.add_argument("target", nargs="?", default="")
        create = verbs.add_parser("create", help="Create an empty volume: create VOLUME")
        create.add_argument("volume")
        get = verbs.add_parser("get", help="Download a file or folder: get VOLUME PATH [DEST|-]")
        get.add_argument("volume")
        get.add_argument("path")
        get.add_argument("dest", nargs="?", default="")
        put = verbs.add_parser("put", help="Upload a file or folder: put VOLUME LOCAL [PATH]")
        put.add_argument("volume")
        put.add_argument("local")
        put.add_argument("path", nargs="?", default="")
        rm = verbs.add_parser("rm", help="Delete paths, or the whole volume: rm VOLUME [PATH...] [--yes]")
        rm.add_argument("volume")
        rm.add_argument("paths", nargs="*")
        rm.add_argument("--yes", action="store_true", help="Needed to delete a whole volume")
        history = verbs.add_parser("history", help="Generations of a volume: history VOLUME")
        history.add_argument("volume")
        restore = verbs.add_parser("restore", help="Make an old generation current again: restore VOLUME GEN")
        restore.add_argument("volume")
        restore.add_argument("generation", type=int)

    def handle(self, *args, **opts):
        self.opts = opts
        self.err = Console(file=sys.stderr, stderr=True)
        if opts["server"]:
            if not opts["token"]:
                raise CommandError("--server needs --token TOKEN (or VOLUMES_TOKEN)")
            self.backend = RemoteBackend(opts["server"], opts["token"], opts["workspace"])
        else:
            if not opts["user"]:
                raise CommandError("give --user USER to act as on this server, or --server URL --token TOKEN")
            self.backend = LocalBackend(opts["workspace"], opts["user"])
        try:
            getattr(self, f"do_{opts['verb']}")(**opts)
        except VolumesError as exc:
            raise CommandError(str(exc)) from exc

    def _out(self, data: Any, lines: Callable[[], list[str]]) -> None:
        if self.opts["json"]:
            self.stdout.write(json.dumps(data, indent=2, default=str))
        else:
            for line in lines():
                self.stdout.write(line)

    @contextmanager
    def _progress(self, total: int, label: str) -> Iterator[Advance]:
        quiet = self.opts["quiet"] or not self.err.is_terminal
        columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn()]
        with Progress(*columns, console=self.err, disable=quiet, transient=False) as progress:
            task = progress.add_task(label, total=total)
            yield lambda n: progress.advance(task, n)

    # Verbs ----------------------------------------------------------------------------------------

    def do_ls(self, target: str, **_):
        if not target:
            rows = self.backend.volumes()
            self._out(rows, lambda: [
                f"{r['name']:<30} {decimal(r['size_bytes']):>10} {r['file_count']:>7} files  gen {r['generation']:<5}"
                f" {(r['owner'] or '-'):<12} {r['access']['level'] or '-':<5}"
                + (f"  leased by {r['lease']['holder']}" if r.get("lease") else "")
                for r in rows
            ])
            return
        name, _, path = target.partition(":")
        path = _clean(path.rstrip("/"), allow_root=True)
        entries = self.backend.folder(name, path)
        self._out(entries, lambda: [_entry_line(e) for e in entries])

    def do_create(self, volume: str, **_):
        self.backend.create(volume)
        self.stdout.write(f"created volume {volume}")

    def do_get(self, volume: str, path: str, dest: str, **_):
        path = _clean(path.rstrip("/"), allow_root=True)
        entry = self.backend.entry(volume, path) if path else {"type": "dir", "path": ""}
        if entry["type"] == "link":
            raise CommandError(f"{path!r} is a symlink to {entry['target']!r}; links are never followed")
        if dest == "-":
            if entry["type"] != "file":
                raise CommandError("only a single file can be written to standard output")
            self.backend.download(volume, path, sys.stdout.buffer, lambda n: None)
            sys.stdout.buffer.flush()
            return
        if entry["type"] == "file":
            target = Path(dest or path.rpartition("/")[2])
            if target.is_dir():
                target = target / path.rpartition("/")[2]
            self._fetch(volume, [(path, target, entry["size"])])
            self.stdout.write(f"downloaded {path} to {target}")
            return
        root = Path(dest or (path.rpartition("/")[2] or volume))
        plan: list[tuple[str, Path, int]] = []
        self._walk(volume, path, root, plan)
        self._fetch(volume, plan)
        self.stdout.write(f"downloaded {len(plan)} files to {root}")

    def _walk(self, volume: str, folder: str, local: Path, plan: list) -> None:
        local.mkdir(parents=True, exist_ok=True)
        for entry in self.backend.folder(volume, folder):
            target = local / entry["name"]
            if entry["type"] == "dir":
                self._walk(volume, entry["path"], target, plan)
            elif entry["type"] == "link":
                if not target.exists() and not target.is_symlink():
                    os.symlink(entry["target"], target)  # recreated as a link, never followed
            else:
                plan.append((entry["path"], target, entry["size"]))

    def _fetch(self, volume: str, plan: list[tuple[str, Path, int]]) -> None:
        total = sum(size for *_, size in plan)
        with self._progress(total, f"get {volume}") as advance:
            for path, target, _ in plan:
                tmp = target.with_name(f".{target.name}.part")
                try:
                    with open(tmp, "wb") as out:
                        self.backend.download(volume, path, out, advance)
                    os.replace(tmp, target)
                finally:
                    if tmp.exists():
                        tmp.unlink()

    def do_put(self, volume: str, local: str, path: str, **_):
        source = Path(local)
        if not source.exists():
            raise CommandError(f"{local} does not exist")
        if source.is_file():
            dest = path + source.name if (not path or path.endswith("/")) else path
            plan = [(source, _clean(dest))]
        elif source.is_dir():
            base = path.rstrip("/") if path else source.resolve().name
            plan = []
            for dirpath, dirnames, filenames in os.walk(source):
                dirnames.sort()
                for filename in sorted(filenames):
                    full = Path(dirpath) / filename
                    if full.is_symlink() or not full.is_file():
                        self.err.print(f"skipped {full}: only regular files are uploaded")
                        continue
                    rel = full.relative_to(source).as_posix()
                    plan.append((full, _clean(f"{base}/{rel}" if base else rel)))
        else:
            raise CommandError(f"{local} is not a file or folder")
        total = sum(p.stat().st_size for p, _ in plan)
        with self._progress(total, f"put {volume}") as advance:
            for full, dest in plan:
                self.backend.upload(volume, dest, full, advance)
        self.stdout.write(f"uploaded {len(plan)} file{'s' if len(plan) != 1 else ''} to {volume}")

    def do_rm(self, volume: str, paths: list[str], yes: bool, **_):
        if not paths:
            if not yes:
                raise CommandError(f"this deletes volume {volume!r} and all its files; add --yes to confirm")
            self.backend.delete_volume(volume)
            self.stdout.write(f"deleted volume {volume}")
            return
        for path in paths:
            generation = self.backend.delete(volume, _clean(path.rstrip("/")))
            self.stdout.write(f"deleted {path} (generation {generation})")

    def do_history(self, volume: str, **_):
        rows = self.backend.history(volume)
        self._out(rows, lambda: [
            f"{r['generation']:>5}  {str(r['created_at'])[:19]}  {(r['user'] or '-'):<12} "
            f"{('job ' + str(r['job'])) if r['job'] else '':<9} +{r['files_added']} ~{r['files_changed']} "
            f"-{r['files_deleted']}  {decimal(r['size_bytes']):>10}  {r['message']}"
            for r in rows
        ])

    def do_restore(self, volume: str, generation: int, **_):
        new = self.backend.restore(volume, generation)
        self.stdout.write(f"restored generation {generation} of {volume} as generation {new}")


def _entry_line(e: dict) -> str:
    if e["type"] == "dir":
        return f"{'':>10}  {e['name']}/"
    if e["type"] == "link":
        return f"{'':>10}  {e['name']} -> {e['target']}"
    return f"{decimal(e['size']):>10}  {e['name']}"

