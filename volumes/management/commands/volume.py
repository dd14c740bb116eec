"""`manage.py volume ls|get|put|rm|history|restore|create|duplicate|quota`: volumes from the command line.

On the server it acts as `--user USER` through the same services and permission checks
as the API (each change takes the lease and commits a generation). With
`--server URL --token TOKEN` it does the same through the REST API of a remote server.
Transfers show progress bars on a terminal. The verbs' work is in `volumes.cli`; this reads
the arguments, makes the call and prints.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from volumes.storage.keys import clean_path
from volumes.cli import backend_for, transfers
from volumes.cli.transfers import Advance
from volumes.exceptions import VolumesError
from volumes.services.volumes import parse_size


class Command(BaseCommand):
    help = "List, download, upload, delete and restore volume files, here (--user) or remotely (--server/--token)."
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument("--workspace", "-w", required=True)
        parser.add_argument("--user", "-u", help="Act as this user (on the server itself)")
        parser.add_argument("--server", help="A remote server's base URL; use with --token")
        parser.add_argument("--token", default="",
                            help="API token for --server; better VOLUMES_TOKEN or --token-file (a command line "
                                 "shows in ps)")
        parser.add_argument("--token-file", default=None,
                            help="A file holding the API token (or set VOLUMES_TOKEN_FILE)")
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
        trash = verbs.add_parser("trash", help="Deleted volumes: trash [restore|purge VOLUME] (purge removes its "
                                               "files from storage now)")
        trash.add_argument("action", nargs="?", choices=["ls", "restore", "purge"], default="ls")
        trash.add_argument("volume", nargs="?", default="")
        history = verbs.add_parser("history", help="Generations of a volume: history VOLUME")
        history.add_argument("volume")
        restore = verbs.add_parser("restore", help="Make an old generation current again: restore VOLUME GEN")
        restore.add_argument("volume")
        restore.add_argument("generation", type=int)
        prune = verbs.add_parser("prune", help="Drop old generations from a volume's history (frees storage "
                                               "at the next GC): prune VOLUME [--keep N]")
        prune.add_argument("volume")
        prune.add_argument("--keep", type=int, default=1, help="Generations to keep, newest first (default 1)")
        duplicate = verbs.add_parser("duplicate", help="A new volume with the files of another's generation, copied "
                                                       "inside the storage: duplicate SOURCE NEW [--generation N]")
        duplicate.add_argument("volume")
        duplicate.add_argument("new")
        duplicate.add_argument("--generation", type=int, default=None,
                               help="The source generation to copy (default: its current one)")
        quota = verbs.add_parser("quota", help="Show or set a volume's size limit (its history included): "
                                               "quota VOLUME [SIZE|none], e.g. 10 GB, 500 MB, 1.5 GiB")
        quota.add_argument("volume")
        quota.add_argument("size", nargs="?", default=None)
        fsck = verbs.add_parser("fsck", help="Check a volume's current generation (and repair it): fsck VOLUME "
                                             "[--repair] [--quick]")
        fsck.add_argument("volume")
        fsck.add_argument("--repair", action="store_true",
                          help="Commit what is still readable as a new generation, without the damaged entries")
        fsck.add_argument("--quick", action="store_true", help="Check blob sizes only, not their hashes")

    def handle(self, *args, **opts):
        self.opts = opts
        self.err = Console(file=sys.stderr, stderr=True)
        try:
            self.backend = backend_for(opts["workspace"], opts["user"], opts["server"], opts["token"],
                                       opts["token_file"])
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

    def do_fsck(self, volume: str, repair: bool, quick: bool, **_):
        found, generation = self.backend.fsck(volume, repair, deep=not quick)
        data = {"volume": found.volume, "generation": found.generation, "ok": found.ok,
                "problems": [vars(p) for p in found.problems], "repaired_generation": generation}

        def lines() -> list[str]:
            out = [found.summary()] + [f"  {p.what:<8} {p.describe()}" for p in found.problems]
            if generation is not None:
                out.append(f"repaired: generation {generation} keeps everything readable and drops "
                           f"{len(found.problems):,} damaged entries (earlier generations are unchanged)")
            elif not found.ok:
                out.append("run again with --repair to commit a generation without the damaged entries")
            return out

        self._out(data, lines)
        if not found.ok and generation is None:
            raise CommandError(f"{len(found.problems)} problems found")

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
        path = clean_path(path.rstrip("/"), allow_root=True)
        entries = self.backend.folder(name, path)
        self._out(entries, lambda: [_entry_line(e) for e in entries])

    def do_create(self, volume: str, **_):
        self.backend.create(volume)
        self.stdout.write(f"created volume {volume}")

    def do_get(self, volume: str, path: str, dest: str, **_):
        done = transfers.get(self.backend, volume, path, dest, self._progress, sys.stdout.buffer)
        if done:
            self.stdout.write(done)

    def do_put(self, volume: str, local: str, path: str, **_):
        self.stdout.write(transfers.put(self.backend, volume, local, path, self._progress, self.err.print))

    def do_rm(self, volume: str, paths: list[str], yes: bool, **_):
        if not paths:
            if not yes:
                raise CommandError(f"this deletes volume {volume!r} and all its files; add --yes to confirm")
            self.backend.delete_volume(volume)
            self.stdout.write(f"deleted volume {volume} (moved to the trash: `trash restore {volume}` brings it "
                              f"back, `trash purge {volume}` removes its files from storage now)")
            return
        for path in paths:
            generation = self.backend.delete(volume, clean_path(path.rstrip("/")))
            self.stdout.write(f"deleted {path} (generation {generation})")

    def do_trash(self, action: str, volume: str, **_):
        if action == "ls":
            rows = self.backend.trash()
            self._out(rows, lambda: [
                f"{r['name']:<30} {decimal(r['size_bytes']):>10} {r['file_count']:>7} files  deleted "
                f"{str(r['deleted_at'])[:19]} by {r['deleted_by'] or '-':<12} purged after {str(r['purge_at'])[:19]}"
                for r in rows
            ])
            return
        if not volume:
            raise CommandError(f"trash {action} needs the volume's name")
        if action == "restore":
            self.backend.trash_restore(volume)
            self.stdout.write(f"restored volume {volume} with its files and history")
        else:
            self.backend.trash_purge(volume)
            self.stdout.write(f"deleted volume {volume} for good (its files are gone from storage)")

    def do_duplicate(self, volume: str, new: str, generation: int | None, **_):
        row = self.backend.duplicate(volume, new, generation)
        source = f"{volume} generation {generation}" if generation is not None else volume
        self._out(row, lambda: [f"duplicated {source} as {row['name']} "
                                f"({row['file_count']} files, {decimal(row['size_bytes'])})"])

    def do_quota(self, volume: str, size: str | None, **_):
        change = size is not None
        row = self.backend.quota(volume, parse_size(size) if change else None, change)

        def lines() -> list[str]:
            own, usage = row["max_size_bytes"], row.get("usage")
            line = f"{row['name']}: " + (f"limit {decimal(own)}" if own is not None else "no limit of its own")
            if usage:
                if own is None or usage["cap_bytes"] < own:
                    line += f"; the workspace's limit of {decimal(usage['cap_bytes'])} applies"
                line += f"; stores {decimal(usage['stored_bytes'])} ({usage['percent']} %), history included"
                if usage["level"]:
                    line += f" ({usage['level']}: {'over' if usage['percent'] >= 100 else 'near'} the limit)"
            return [line]

        self._out(row, lines)

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

    def do_prune(self, volume: str, keep: int, **_):
        pruned = self.backend.prune(volume, keep)
        self.stdout.write(f"dropped {pruned} generations from the history of {volume}; "
                          "their storage is freed at the next garbage collection")


def _entry_line(e: dict) -> str:
    if e["type"] == "dir":
        return f"{'':>10}  {e['name']}/"
    if e["type"] == "link":
        return f"{'':>10}  {e['name']} -> {e['target']}"
    return f"{decimal(e['size']):>10}  {e['name']}"

