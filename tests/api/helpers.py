"""Helpers for API tests."""
from __future__ import annotations

import io


def put_file(client, ws, volume, path, data: bytes, **extra):
    return client.generic(
        "PUT", f"/api/w/{ws}/volumes/{volume}/files/{path}", data, content_type="application/octet-stream", **extra
    )


def seed(volume, files: dict[str, bytes], user=None) -> None:
    """Put files into a volume through the service (one generation each)."""
    from volumes.services.files import file_put

    for path, data in files.items():
        file_put(volume, path, io.BytesIO(data), user=user)


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content
