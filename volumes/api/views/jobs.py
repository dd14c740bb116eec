"""Jobs of a workspace: list, submit, read, page through the log, cancel."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response

from ... import selectors
from ...exceptions import Conflict
from ...services import jobs
from .. import access
from .. import serializers as s
from .common import ERRORS, MAX_OFFSET, PAGE_PARAMETERS, ApiView, page_of, paginate, validated, whole_number


class JobListView(ApiView):
    @extend_schema(summary="Jobs: admins see all of the workspace, members their own",
                   operation_id="w_jobs_list", parameters=PAGE_PARAMETERS,
                   responses={200: page_of(s.JobSerializer, "JobPage"), **ERRORS})
    def get(self, request, ws: str):
        workspace, _ = access.workspace(request, ws)
        queryset = selectors.jobs_for_user(request.user, workspace).prefetch_related("mounts")
        return paginate(self, request, queryset, s.JobSerializer)

    @extend_schema(summary="Run a script as a job", request=s.JobCreateSerializer,
                   responses={201: s.JobDetailSerializer, **ERRORS})
    def post(self, request, ws: str):
        workspace, _ = access.workspace(request, ws)
        data = validated(s.JobCreateSerializer, request.data)
        job = jobs.job_submit(workspace, request.user, data["language"], data["content"], data["args"])
        return Response(s.JobDetailSerializer(job).data, status=201)


class JobDetailView(ApiView):
    @extend_schema(summary="A job with its status, log, result and per-volume sync figures",
                   responses={200: s.JobDetailSerializer, **ERRORS})
    def get(self, request, ws: str, job_id: int):
        _, job = access.job(request, ws, job_id)
        return Response(s.JobDetailSerializer(job).data)


class JobLogView(ApiView):
    @extend_schema(
        summary="One page of a job's kept log, from a byte offset of everything it logged",
        parameters=[OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                                     description="Byte offset (0: the start)"),
                    OpenApiParameter("limit", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                                     description="Bytes per page (at most 1 MiB are sent; default 64 KiB)")],
        responses={200: s.JobLogPageSerializer, **ERRORS},
    )
    def get(self, request, ws: str, job_id: int):
        _, job = access.job(request, ws, job_id)
        offset = whole_number(request.query_params, "offset", 0, 0, MAX_OFFSET, "a byte offset, e.g. ?offset=0")
        limit = whole_number(request.query_params, "limit", 65536, 0, MAX_OFFSET, "bytes, e.g. ?limit=65536")
        return Response(s.JobLogPageSerializer(selectors.job_log_page(job.pk, offset, limit or 1)).data)


class JobCancelView(ApiView):
    @extend_schema(summary="Cancel a job: a queued job never starts; a running one is stopped",
                   request=None, responses={200: s.JobDetailSerializer, 409: OpenApiResponse(), **ERRORS})
    def post(self, request, ws: str, job_id: int):
        _, job = access.job(request, ws, job_id)
        if job.is_finished:
            raise Conflict(f"job {job.pk} has already finished ({job.status}); there is nothing to cancel")
        jobs.job_cancel(job)
        job.refresh_from_db()
        return Response(s.JobDetailSerializer(job).data)
