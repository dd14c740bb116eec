"""A volume's generations and health: list, restore, prune, check, repair."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from ... import selectors
from ...services import files
from ...services import volumes as volume_services
from .. import access
from .. import serializers as s
from .common import CONFLICT, ERRORS, PAGE_PARAMETERS, ApiView, page_of, paginate, validated


class HistoryView(ApiView):
    @extend_schema(summary="Generations of a volume, newest first: who, when, what changed",
                   operation_id="w_volumes_history_list", parameters=PAGE_PARAMETERS,
                   responses={200: page_of(s.CommitSerializer, "CommitPage"), **ERRORS})
    def get(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name)
        return paginate(self, request, selectors.volume_history(volume), s.CommitSerializer)


class RestoreView(ApiView):
    @extend_schema(summary="Commit an older generation's files as the newest generation",
                   request=None, responses={200: s.ChangeSerializer, **ERRORS, **CONFLICT})
    def post(self, request, ws: str, name: str, generation: int):
        volume, _ = access.volume(request, ws, name, need="write")
        new = files.generation_restore(volume, generation, user=request.user)
        return Response(s.ChangeSerializer({"generation": new}).data)


def _health(found, repaired: int | None = None) -> dict:
    data = s.HealthSerializer({**vars(found), "ok": found.ok, "problems": [vars(p) for p in found.problems],
                               "repaired_generation": repaired}).data
    return data


class HealthView(ApiView):
    @extend_schema(summary="Check the current generation: manifest valid, every blob present with its size and "
                           "(unless ?quick=1) its hash", responses={200: s.HealthSerializer, **ERRORS})
    def get(self, request, ws: str, name: str):
        from ...services import health

        volume, _ = access.volume(request, ws, name)
        quick = request.query_params.get("quick") in ("1", "true", "yes")
        return Response(_health(health.volume_check(volume, deep=not quick)))


class RepairView(ApiView):
    @extend_schema(summary="Commit what is still readable of a damaged current generation as a new generation",
                   request=None, responses={200: s.HealthSerializer, **ERRORS, **CONFLICT})
    def post(self, request, ws: str, name: str):
        from ...services import health

        volume, _ = access.volume(request, ws, name, need="write")
        quick = request.query_params.get("quick") in ("1", "true", "yes")
        found, generation = health.volume_repair(volume, user=request.user, deep=not quick)
        return Response(_health(found, generation))


class PruneView(ApiView):
    @extend_schema(summary="Drop all but the newest `keep` generations (default 1) from the volume's history",
                   request=s.PruneSerializer, responses={200: s.PrunedSerializer, **ERRORS})
    def post(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="delete")
        data = validated(s.PruneSerializer, request.data)
        pruned = volume_services.volume_prune_history(volume, keep=data["keep"], user=request.user)
        return Response(s.PrunedSerializer({"pruned": pruned}).data)
