"""The `volume` command's verbs on this server: as `--user USER`, through the services and the
same permission checks as the API (each change takes the lease and commits a generation)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from django.contrib.auth import get_user_model

from volumes import selectors
from volumes.api.serializers import CommitSerializer, EntrySerializer, TrashedVolumeSerializer, VolumeSerializer
from volumes.exceptions import NotFound
from volumes.permissions import access, volume_for, workspace_for
from volumes.selectors import VolumeRow
from volumes.services import files, health
from volumes.services.volumes import (
    trash_list, trashed_volume_for, volume_create, volume_delete, volume_duplicate, volume_prune_history,
    volume_purge, volume_restore, volume_set_quota,
)

from .transfers import Advance, Counting


class LocalBackend:
    """Acts as a user of this server through the services, with the API's permission checks."""

    def __init__(self, workspace: str, username: str) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise NotFound(f"user {username!r} does not exist")
        self.ws, self.user = workspace, user

    def _volume(self, name: str, need: str = "see"):
        return volume_for(self.user, self.ws, name, need)[0]

    def volumes(self) -> list[dict]:
        workspace, _ = workspace_for(self.user, self.ws)
        return VolumeSerializer(selectors.volume_list_for_user(self.user, workspace), many=True).data

    def create(self, name: str) -> None:
        workspace, _ = workspace_for(self.user, self.ws)
        volume_create(workspace, name, owner=self.user)

    def duplicate(self, name: str, new: str, generation: int | None) -> dict:
        copy = volume_duplicate(self._volume(name), new, self.user, generation)
        return VolumeSerializer(VolumeRow(copy, access(self.user, copy), False)).data

    def quota(self, name: str, size: int | None, change: bool) -> dict:
        volume, rights = volume_for(self.user, self.ws, name, need="quota" if change else "see")
        if change:
            volume = volume_set_quota(volume, size, user=self.user)
        return VolumeSerializer(VolumeRow(volume, rights, False)).data

    def folder(self, name: str, path: str) -> list[dict]:
        return EntrySerializer(files.list_folder(self._volume(name), path), many=True).data

    def entry(self, name: str, path: str) -> dict:
        return EntrySerializer(files.entry_at(self._volume(name), path)).data

    def download(self, name: str, path: str, out: BinaryIO, advance: Advance) -> None:
        volume = self._volume(name)
        entry = files.entry_at(volume, path)
        for chunk in files.open_file(volume, entry):
            out.write(chunk)
            advance(len(chunk))

    def upload_many(self, name: str, plan: list[tuple[Path, str]], advance: Advance) -> int:
        """Every (local file, path) as one generation; returns it."""
        volume = self._volume(name, "write")
        handles = [open(local, "rb") for local, _ in plan]
        try:
            items = [(dest, Counting(fh, local.stat().st_size, advance)) for (local, dest), fh in zip(plan, handles)]
            return files.file_put_many(volume, items, user=self.user)
        finally:
            for fh in handles:
                fh.close()

    def upload(self, name: str, path: str, local: Path, advance: Advance) -> None:
        volume = self._volume(name, "write")
        with open(local, "rb") as fh:
            files.file_put(volume, path, Counting(fh, local.stat().st_size, advance), user=self.user)

    def delete(self, name: str, path: str) -> int:
        return files.file_delete(self._volume(name, "write"), path, user=self.user)

    def delete_volume(self, name: str) -> None:
        volume_delete(self._volume(name, "delete"), user=self.user)

    def trash(self) -> list[dict]:
        workspace, _ = workspace_for(self.user, self.ws)
        return TrashedVolumeSerializer(trash_list(self.user, workspace), many=True).data

    def trash_restore(self, name: str) -> None:
        volume_restore(trashed_volume_for(self.user, self.ws, name), user=self.user)

    def trash_purge(self, name: str) -> None:
        volume_purge(trashed_volume_for(self.user, self.ws, name), user=self.user)

    def history(self, name: str) -> list[dict]:
        return CommitSerializer(selectors.volume_history(self._volume(name)), many=True).data

    def restore(self, name: str, generation: int) -> int:
        return files.generation_restore(self._volume(name, "write"), generation, user=self.user)

    def prune(self, name: str, keep: int) -> int:
        return volume_prune_history(self._volume(name, "delete"), keep=keep, user=self.user)

    def fsck(self, name: str, repair: bool, deep: bool) -> tuple[Any, int | None]:
        if repair:
            return health.volume_repair(self._volume(name, "write"), user=self.user, deep=deep)
        return health.volume_check(self._volume(name), deep=deep), None
