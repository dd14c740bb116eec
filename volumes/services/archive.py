"""A folder or a whole volume as a zip, streamed: one file at a time from storage into the zip
writer and out to the client; nothing of the volume is held whole in memory or on disk."""
from __future__ import annotations

import stat
import time
import zipfile
from typing import Callable, Iterable, Iterator

from .. import conf
from ..engine import pins
from ..engine.manifest import DIR, FILE, LINK, Entry, Manifest
from ..exceptions import LeaseLost, NotFound
from ..models import Volume
from . import files


class _Sink:
    """A write-only, unseekable file for ZipFile: written bytes wait here until the next drain()."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:  # ZipFile asks where it is; it never seeks an unseekable file
        return self.offset

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _date_time(entry: Entry) -> tuple[int, ...]:
    seconds = (entry.mtime_ns or time.time_ns()) / 1e9
    return max(time.gmtime(seconds)[:6], (1980, 1, 1, 0, 0, 0))


def zip_entries(volume: Volume, folder: str = "", generation: int | None = None) -> tuple[Manifest, list[Entry]]:
    """The entries a zip of `folder` (the root: everything) holds, checked before any byte is sent."""
    manifest = files.manifest_of(volume, generation)
    folder = folder.strip("/")
    if folder and (folder not in manifest.entries or manifest.entries[folder].type != DIR):
        raise NotFound(f"folder {folder!r} does not exist in volume {volume.name!r}")
    prefix = f"{folder}/" if folder else ""
    entries = sorted((e for p, e in manifest.entries.items() if p.startswith(prefix)), key=lambda e: e.path)
    return manifest, entries


def zip_stream(volume: Volume, entries: Iterable[Entry], folder: str = "", chunk: int = 1 << 20) -> Iterator[bytes]:
    """Yield the zip's bytes. Paths are relative to `folder`; links are kept as zip symlinks (their
    target text, never followed); empty folders as folder entries."""
    folder = folder.strip("/")
    cut = len(folder) + 1 if folder else 0
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for entry in entries:
            name = entry.path[cut:]
            if entry.type == DIR:
                info = zipfile.ZipInfo(name + "/", _date_time(entry))
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                archive.writestr(info, b"")
            elif entry.type == LINK:
                info = zipfile.ZipInfo(name, _date_time(entry))
                info.create_system = 3  # unix, so the mode bits below mean a symlink
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, (entry.target or "").encode())
            elif entry.type == FILE:
                info = zipfile.ZipInfo(name, _date_time(entry))
                info.create_system = 3
                info.external_attr = (stat.S_IFREG | (entry.mode & 0o777 or 0o644)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                info.file_size = entry.size
                with archive.open(info, mode="w", force_zip64=entry.size > 2**31) as out:
                    for data in files.open_file(volume, entry):
                        out.write(data)
                        if sink.offset and sum(map(len, sink.parts)) >= chunk:
                            yield sink.drain()
            data = sink.drain()
            if data:
                yield data
    tail = sink.drain()  # the central directory
    if tail:
        yield tail


def pinned_zip(volume: Volume, folder: str = "",
               pick: Callable[[list[Entry]], list[Entry]] | None = None) -> tuple[int, Iterator[bytes]]:
    """The volume's current generation as a zip stream under a reader's pin: `folder` of it, or what
    `pick` keeps of the whole volume (named relative to `folder`). GC keeps every blob it needs until
    the last byte is sent, however the volume changes meanwhile. Returns (generation, stream); the pin
    goes when the stream ends or is closed."""
    pin = pins.pin(volume.pk, f"zip download of {volume.name}")
    try:
        _, entries = zip_entries(volume, "" if pick else folder, pin.generation)
        if pick is not None:
            entries = pick(entries)
            if not entries:
                raise NotFound("none of the selected entries exists any more")
    except BaseException:
        pins.release(pin)
        raise

    def stream() -> Iterator[bytes]:
        renewed = time.monotonic()
        try:
            for data in zip_stream(volume, entries, folder):
                if time.monotonic() - renewed > conf.get("LEASE_RENEW_INTERVAL"):
                    try:
                        pins.renew(pin)
                    except LeaseLost:  # a client that stalled past the TTL: read on while the blobs last
                        pass
                    renewed = time.monotonic()
                yield data
        finally:
            pins.release(pin)

    return pin.generation, stream()
