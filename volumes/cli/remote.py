"""The `volume` command's verbs through the REST API of a server (`--server URL --token TOKEN`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from volumes.agent import ApiClient
from volumes.exceptions import NotFound
from volumes.services.health import Health, Problem

from .transfers import CHUNK, Advance, Counting


class RemoteBackend:
    """The same verbs through the REST API of a server (`--server URL --token TOKEN`)."""

    def __init__(self, server: str, token: str, workspace: str) -> None:
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

    def duplicate(self, name: str, new: str, generation: int | None) -> dict:
        body = {"name": new} if generation is None else {"name": new, "generation": generation}
        return self.client.json("POST", self._v(name, "duplicate/"), json=body)

    def quota(self, name: str, size: int | None, change: bool) -> dict:
        if not change:
            return self.client.json("GET", self._v(name))
        return self.client.json("PUT", self._v(name, "quota/"), json={"max_size_bytes": size})

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
                "PUT", self._v(name, f"files/{self._p(path)}"), data=Counting(fh, local.stat().st_size, advance),
                headers={"Content-Type": "application/octet-stream"},
            )

    def upload_many(self, name: str, plan: list[tuple[Path, str]], advance: Advance) -> int:
        """Every (local file, path) as one generation: a tar stream (written to a temporary file
        first, so it goes with a Content-Length) to the upload endpoint; returns the generation."""
        import tarfile
        import tempfile

        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                for local, dest in plan:
                    info = tarfile.TarInfo(dest)
                    info.size, info.mode = local.stat().st_size, 0o644
                    with open(local, "rb") as fh:
                        archive.addfile(info, fh)
            size = spool.tell()
            spool.seek(0)
            total = sum(local.stat().st_size for local, _ in plan)
            body = Counting(spool, size, lambda n: advance(n * total // max(size, 1)))
            return self.client.json("POST", self._v(name, "upload/"), data=body,
                                    headers={"Content-Type": "application/x-tar"})["generation"]

    def delete(self, name: str, path: str) -> int:
        return self.client.json("DELETE", self._v(name, f"files/{self._p(path)}"))["generation"]

    def delete_volume(self, name: str) -> None:
        self.client.request("DELETE", self._v(name))

    def trash(self) -> list[dict]:
        return self.client.json("GET", "trash/")

    def trash_restore(self, name: str) -> None:
        self.client.json("POST", f"trash/{quote(name, safe='')}/restore/")

    def trash_purge(self, name: str) -> None:
        self.client.request("DELETE", f"trash/{quote(name, safe='')}/")

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

    def prune(self, name: str, keep: int) -> int:
        return self.client.json("POST", self._v(name, "history/prune/"), json={"keep": keep})["pruned"]

    def fsck(self, name: str, repair: bool, deep: bool) -> tuple[Any, int | None]:
        params = {} if deep else {"quick": "1"}
        if repair:
            data = self.client.json("POST", self._v(name, "health/repair/"), params=params)
        else:
            data = self.client.json("GET", self._v(name, "health/"), params=params)
        found = Health(data["volume"], data["generation"], data["entries"], data["files_checked"],
                       data["hashes_checked"], [Problem(**p) for p in data["problems"]])
        return found, data.get("repaired_generation")
