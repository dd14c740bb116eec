"""The API's index and the caller's workspaces."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as drf
from rest_framework.response import Response

from ... import permissions, selectors
from .common import ERRORS, ApiView


class ApiRootView(ApiView):
    @extend_schema(
        summary="Where to start: the interactive docs, the OpenAPI schema and your workspaces",
        tags=["workspaces"],
        responses={200: inline_serializer("ApiRoot", {
            "docs": drf.URLField(), "schema": drf.URLField(), "workspaces": drf.URLField()}), **ERRORS},
    )
    def get(self, request):
        return Response({name: request.build_absolute_uri(reverse(f"api-{name}"))
                         for name in ("docs", "schema", "workspaces")})


# Workspaces --------------------------------------------------------------------------------------

class WorkspaceListView(ApiView):
    @extend_schema(
        summary="The workspaces you are a member of, with your role and whether you may run agent workers",
        tags=["workspaces"],
        responses={200: inline_serializer("WorkspaceRow", {
            "id": drf.CharField(), "name": drf.CharField(), "role": drf.CharField(),
            "can_run_agents": drf.BooleanField()}, many=True), **ERRORS},
    )
    def get(self, request):
        return Response([
            {"id": ws.pk, "name": ws.name, "role": permissions.role(request.user, ws),
             "can_run_agents": permissions.can_run_agents(request.user, ws)}
            for ws in selectors.workspaces_for_user(request.user)
        ])
