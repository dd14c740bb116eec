"""Dashboard tests: a logged-in test client for each member of the cast, and small helpers."""
from __future__ import annotations

import io

import pytest
from django.test import Client


@pytest.fixture
def as_user(cast):
    """as_user("reader") -> a Client logged in as that member of the cast."""
    clients: dict[str, Client] = {}

    def make(name: str, **kwargs) -> Client:
        if name not in clients or kwargs:
            client = Client(**kwargs)
            client.force_login(cast[name])
            clients[name] = client
        return clients[name]

    return make


@pytest.fixture
def upload(as_user, workspace):
    """upload(volume, {"a.txt": b"..."}, user="owner", folder="") -> the response."""

    def do(volume, files: dict[str, bytes], user: str = "owner", folder: str = "", **headers):
        handles = []
        for name, data in files.items():
            handle = io.BytesIO(data)
            handle.name = name
            handles.append(handle)
        return as_user(user).post(
            f"/w/{workspace.pk}/volumes/{volume.name}/files/upload/", {"folder": folder, "files": handles}, **headers
        )

    return do


def url(workspace, volume=None, rest: str = "") -> str:
    if volume is None:
        return f"/w/{workspace.pk}/{rest}"
    return f"/w/{workspace.pk}/volumes/{volume.name}/{rest}"


HTMX = {"HTTP_HX_REQUEST": "true"}
