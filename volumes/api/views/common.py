"""What every API view shares: authentication, the error responses of the schema, pagination,
strict whole-number parameters and input validation."""
from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers as drf
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.views import APIView

from ... import selectors
from ...exceptions import VolumesError
from ...selectors import VolumeRow
from ..auth import ApiTokenAuthentication

ERRORS = {
    400: OpenApiResponse(description="Invalid input or path"),
    401: OpenApiResponse(description="Not authenticated"),
    403: OpenApiResponse(description="No right to do this"),
    404: OpenApiResponse(description="Not found (or not a member of the workspace)"),
}
CONFLICT = {409: OpenApiResponse(description="The volume is in use (leased); the body names the holder")}


class ApiView(APIView):
    # Token first, so an anonymous request gets 401 with `WWW-Authenticate: Token`.
    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]


MAX_OFFSET = 10**18 - 1


def whole_number(params, name: str, default: int, low: int, high: int, what: str) -> int:
    """A query parameter that must be a whole number in [low, high]; 400 for anything else (`null`, `-1`, `1.5`)."""
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high)) and low <= int(raw) <= high):
        raise VolumesError(f"?{name}= must be a whole number from {low:,} to {high:,} ({what}), not {raw[:40]!r}")
    return int(raw)


class Pagination(LimitOffsetPagination):
    """Limit and offset as the schema says: malformed or out-of-range values are refused with 400, never
    replaced by the defaults."""

    default_limit = 100
    max_limit = 1000

    def get_limit(self, request) -> int:
        return whole_number(request.query_params, self.limit_query_param, self.default_limit, 1, self.max_limit,
                            "rows per page")

    def get_offset(self, request) -> int:
        return whole_number(request.query_params, self.offset_query_param, 0, 0, MAX_OFFSET, "rows to skip")


PAGE_PARAMETERS = [
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": Pagination.max_limit},
                     description="Rows per page (1 to 1000; default 100)"),
    OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                     description="Rows to skip (default 0)"),
]


def page_of(serializer_class, name: str):
    """The schema of what `paginate` returns: {count, next, previous, results: [...]}."""
    return inline_serializer(name, {"count": drf.IntegerField(), "next": drf.URLField(allow_null=True),
                                    "previous": drf.URLField(allow_null=True), "results": serializer_class(many=True)})


def paginate(view: APIView, request, queryset, serializer_class):
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def volume_row(volume, rights) -> VolumeRow:
    return VolumeRow(volume, rights, selectors.volume_is_leased(volume))


def validated(serializer_class, data) -> dict:
    """Validated input, or a 400 naming the fields."""
    if not isinstance(data, Mapping):
        raise VolumesError(f"the body must be a JSON object, not {type(data).__name__}")
    # A JSON body (a plain dict; forms parse to a QueryDict) gets JSON's types checked strictly.
    serializer = serializer_class(data=data, context={"json": type(data) is dict})
    if not serializer.is_valid():
        raise VolumesError(f"invalid input: {_describe(serializer.errors)}", fields=_describe(serializer.errors))
    return serializer.validated_data


def _describe(errors) -> str:
    if isinstance(errors, dict):
        return "; ".join(f"{k}: {_describe(v)}" if k != "non_field_errors" else _describe(v)
                         for k, v in errors.items())
    if isinstance(errors, list):
        return " ".join(_describe(e) for e in errors)
    return str(errors)

