"""Storages of a workspace over the API (admins only): list, add, change, remove and test.

Saving runs the same rules and live check as the dashboard and `create_workspace`: folders inside
the workspace's base folder (superusers excepted), no loopback or link-local endpoints unless the
operator allows them, then reach, credentials, bucket, a test write and delete.
"""
from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers as drf
from rest_framework.response import Response

from ... import permissions, selectors
from ...exceptions import StorageRefused
from ...models import ObjectStorage
from ...services import workspaces as workspace_services
from ...storage.factory import _clean, parse_storage_url, storage_url_label
from ...storage.policy import storage_probe
from .. import access
from .. import serializers as s
from .common import ERRORS, ApiView, validated

CHECK = {400: OpenApiResponse(description="Refused by this installation's rules (storage_refused) or the "
                                          "live check failed (storage_check_failed); the detail names the step"),
         409: OpenApiResponse(description="Name taken, or the storage holds volumes and its location would change")}
WORKS = inline_serializer("StorageTestResult", {"ok": drf.BooleanField(), "detail": drf.CharField()})


def _admin(request, ws: str):
    workspace, _ = access.workspace(request, ws)
    permissions.require_admin(request.user, workspace)
    return workspace


def _settings(data: dict) -> tuple[str, dict]:
    """(kind, config) from a storage URL or from kind and config."""
    try:
        if "url" in data:
            return parse_storage_url(data["url"])
        return data["kind"], _clean(data["kind"], dict(data["config"]))
    except ValueError as exc:
        raise StorageRefused(str(exc)) from None


def _row(storage: ObjectStorage, workspace) -> dict:
    count = getattr(storage, "volume_count", None)
    return {"pk": storage.pk, "name": storage.name, "kind": storage.kind,
            "location": storage_url_label(storage.kind, storage.config), "is_primary": storage.is_primary,
            "is_volume_storage": workspace.volume_storage_id == storage.pk,
            "volume_count": storage.volumes.count() if count is None else count}


_KINDS = ["filesystem", "s3", "azure", "gcs"]
_URL = {"type": "string", "minLength": 1, "maxLength": 8192, "pattern": "^(file|s3|az|gs)://",
        "description": "file:///abs/path, s3://bucket/prefix?endpoint_url=...&access_key=...&secret_key=..., "
                       "az://container/prefix?connection_string=..., gs://bucket/prefix?endpoint=..."}
_SETTINGS = {"kind": {"type": "string", "enum": _KINDS},
             "config": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 65536},
                        "description": "every setting of the kind (bucket, prefix, endpoint, credentials...)"}}
_SAVE = {"name": {"type": "string", "minLength": 1, "maxLength": 100},
         "is_primary": {"type": "boolean", "default": False},
         "volume_storage": {"type": "boolean", "default": False,
                            "description": "select it as the workspace's volume storage"}}


def _either(common: dict, required: list[str]) -> dict:
    """A storage given by its URL, or by kind and config: exactly one of the two forms (the API refuses both)."""
    return {"oneOf": [
        {"type": "object", "title": "by URL", "properties": {**common, "url": _URL},
         "required": [*required, "url"], "additionalProperties": False},
        {"type": "object", "title": "by kind and config", "properties": {**common, **_SETTINGS},
         "required": [*required, "kind", "config"], "additionalProperties": False},
    ]}


STORAGE_NEW = _either(_SAVE, ["name"])
STORAGE_TEST = _either({}, [])


class StorageListView(ApiView):
    @extend_schema(summary="The workspace's storages (admins)", tags=["storages"],
                   responses={200: s.StorageSerializer(many=True), **ERRORS})
    def get(self, request, ws: str):
        workspace = _admin(request, ws)
        rows = ObjectStorage.objects.filter(workspace=workspace).annotate(volume_count=Count("volumes")).order_by("pk")
        return Response(s.StorageSerializer([_row(row, workspace) for row in rows], many=True).data)

    @extend_schema(summary="Add a storage; it is checked (reach, credentials, bucket, write, delete) before it is "
                           "saved", tags=["storages"], request={"application/json": STORAGE_NEW},
                   responses={201: s.StorageSerializer, **CHECK, **ERRORS})
    def post(self, request, ws: str):
        workspace = _admin(request, ws)
        data = validated(s.StorageWriteSerializer, request.data)
        if "url" not in data and "kind" not in data:
            raise StorageRefused("give the storage's url, or its kind and config")
        kind, config = _settings(data)
        storage = workspace_services.storage_save(workspace, data["name"], kind, config, data["is_primary"],
                                                  user=request.user)
        if data["volume_storage"]:
            workspace_services.volume_storage_select(workspace, storage)
        return Response(s.StorageSerializer(_row(storage, workspace)).data, status=201)


class StorageDetailView(ApiView):
    @extend_schema(summary="One storage (admins)", tags=["storages"],
                   responses={200: s.StorageSerializer, **ERRORS})
    def get(self, request, ws: str, pk: int):
        workspace = _admin(request, ws)
        return Response(s.StorageSerializer(_row(selectors.storage_get(workspace, pk), workspace)).data)

    @extend_schema(summary="Change a storage; new settings are checked before they are saved, and its kind, "
                           "bucket or prefix cannot change while volumes live there", tags=["storages"],
                   request=s.StorageUpdateSerializer, responses={200: s.StorageSerializer, **CHECK, **ERRORS})
    def patch(self, request, ws: str, pk: int):
        workspace = _admin(request, ws)
        storage = selectors.storage_get(workspace, pk)
        data = validated(s.StorageUpdateSerializer, request.data)
        kind, config = _settings(data) if ("url" in data or "kind" in data) else (storage.kind, dict(storage.config))
        storage = workspace_services.storage_save(
            workspace, data.get("name", storage.name), kind, config, data.get("is_primary", storage.is_primary),
            storage=storage, user=request.user)
        if data.get("volume_storage"):
            workspace_services.volume_storage_select(workspace, storage)
        workspace.refresh_from_db()
        return Response(s.StorageSerializer(_row(storage, workspace)).data)

    @extend_schema(summary="Remove a storage that holds no volumes (its data stays where it is)",
                   tags=["storages"], responses={204: None, **CHECK, **ERRORS})
    def delete(self, request, ws: str, pk: int):
        workspace = _admin(request, ws)
        workspace_services.storage_delete(selectors.storage_get(workspace, pk))
        return Response(status=204)


class StorageTestView(ApiView):
    @extend_schema(operation_id="storage_test", summary="Check a saved storage: 'works', or the step that failed",
                   tags=["storages"],
                   request=None, responses={200: WORKS, **CHECK, **ERRORS})
    def post(self, request, ws: str, pk: int):
        workspace = _admin(request, ws)
        storage = selectors.storage_get(workspace, pk)
        # Saved settings passed the folder and credential rules when saved; endpoints are checked again.
        storage_probe(storage.kind, storage.config, workspace.pk, unconfined=True)
        return Response({"ok": True, "detail": "works"})


class StorageTestNewView(ApiView):
    @extend_schema(operation_id="storage_test_settings",
                   summary="Check storage settings before adding them: 'works', or the step that failed",
                   tags=["storages"], request={"application/json": STORAGE_TEST}, responses={200: WORKS, **CHECK, **ERRORS})
    def post(self, request, ws: str):
        workspace = _admin(request, ws)
        kind, config = _settings(validated(s.StorageTestSerializer, request.data))
        storage_probe(kind, config, workspace.pk, unconfined=request.user.is_superuser)
        return Response({"ok": True, "detail": "works"})
