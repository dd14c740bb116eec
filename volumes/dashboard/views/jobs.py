"""Jobs: the list (workspace and volume tab), running a script, a run's live page, log, cancel and rerun."""
from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header, urlencode
from django.views.decorators.http import require_GET, require_POST, require_http_methods

from ... import permissions, selectors
from ...annotations import VOLUME_NAME_RE
from ...exceptions import VolumesError
from ...models import Job, Membership, Workspace
from ...services import jobs as job_services
from .. import forms
from .common import _fragment, _go, _job, _lease_context, _page, _toast, _volume, _workspace, dashboard_view


def _job_filters(request: HttpRequest, workspace: Workspace, is_admin: bool) -> tuple[Any, dict]:
    """Jobs narrowed by ?status=, ?user= (admins) and ?volume=; the choices to show beside them."""
    status = request.GET.get("status", "")
    user = request.GET.get("user", "") if is_admin else ""
    volume = request.GET.get("volume", "")[:255]
    if status not in Job.Status.values:
        status = ""
    qs = selectors.job_list(request.user, workspace, status, user, volume)
    users = list(selectors.workspace_members(workspace).values_list("username", flat=True)) if is_admin else []
    volumes_seen = selectors.job_volume_names(request.user, workspace)
    query = {k: v for k, v in (("status", status), ("user", user), ("volume", volume)) if v}
    return qs, {"filter": query, "statuses": Job.Status.choices, "users": users, "volume_names": volumes_seen}


def _job_rows_context(request: HttpRequest, qs, rows_url: str, query: dict) -> dict:
    paginator = Paginator(qs.prefetch_related("mounts"), 50)
    page = paginator.get_page(request.GET.get("page"))
    for job in page.object_list:
        job.duration_s = _seconds(job.started_at, job.finished_at)
    poll = {**query, **({"page": page.number} if page.number > 1 else {})}
    return {"page": page, "live": any(not j.is_finished for j in page.object_list),
            "rows_url": rows_url + (f"?{urlencode(poll)}" if poll else ""),
            "page_query": urlencode(query) + ("&" if query else "")}


def _seconds(start, end) -> float | None:
    return (end - start).total_seconds() if start and end else None


@require_GET
@dashboard_view
def jobs_page(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _workspace(request, ws_id)
    qs, filters = _job_filters(request, workspace, role == Membership.Role.ADMIN)
    ctx = {**filters, **_job_rows_context(request, qs, reverse("jobs", args=[workspace.pk]), filters["filter"])}
    if _fragment(request):
        return render(request, "volumes/_job_rows.html", {**ctx, "ws": workspace})
    return _page(request, "volumes/jobs.html", ctx, workspace, role, "jobs")


@require_GET
@dashboard_view
def volume_jobs(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """A volume's Jobs tab: the runs that mounted it (all of them for admins, yours for members)."""
    workspace, role, volume, access = _volume(request, ws_id, name)
    qs = selectors.jobs_for_user(request.user, workspace).filter(mounts__volume=volume).distinct()
    ctx = _job_rows_context(request, qs, reverse("volume_jobs", args=[workspace.pk, volume.name]), {})
    if _fragment(request):
        return render(request, "volumes/_job_rows.html", {**ctx, "ws": workspace})
    ctx.update({"volume": volume, "access": access, "tab": "jobs", "shares": permissions.shares_of(volume),
                **_lease_context(volume)})
    return _page(request, "volumes/volume_jobs.html", ctx, workspace, role, "volumes")


@require_http_methods(["GET", "POST"])
@dashboard_view
def job_new(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _workspace(request, ws_id)
    form = forms.JobForm(request.POST or None, workspace_id=workspace.pk, initial=_job_prefill(request, workspace))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = job_services.job_submit(workspace, request.user, data["language"], data["content"], data["args"])
        except VolumesError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("job", ws_id=workspace.pk, job_id=job.pk)
    ctx = {"form": form, "examples": forms.JOB_EXAMPLE, "no_storage": workspace.volume_storage_id is None}
    return _page(request, "volumes/job_new.html", ctx, workspace, role, "jobs",
                 status=422 if request.method == "POST" else 200)


def _job_prefill(request: HttpRequest, workspace: Workspace) -> dict:
    """Run's form filled in: ?from=<job> copies a job you may see; ?volume=<name> mounts a volume."""
    if request.method != "GET":
        return {}
    source = request.GET.get("from", "")
    if source.isdigit():
        job = selectors.jobs_for_user(request.user, workspace).filter(pk=int(source)).first()
        if job is not None:
            return {"language": job.language, "content": job.content,
                    "args": json.dumps(job.args, ensure_ascii=False) if job.args else ""}
    volume = request.GET.get("volume", "")
    if volume and VOLUME_NAME_RE.fullmatch(volume):
        return {"language": "python", "content": forms.JOB_EXAMPLE["python"].replace(
            "# volume: demo-data data", f"# volume: {volume} data")}
    return {}


@require_POST
@dashboard_view
def job_rerun(request: HttpRequest, ws_id: str, job_id: int) -> HttpResponse:
    """The same script and arguments again, as a new job of the caller (with today's rights)."""
    workspace, role, job = _job(request, ws_id, job_id)
    new = job_services.job_submit(workspace, request.user, job.language, job.content, job.args)
    messages.success(request, f"Job {new.pk} runs job {job.pk}'s script again.")
    url = reverse("job", args=[workspace.pk, new.pk])
    return _go(request, url)


LOG_TAIL_BYTES = 128 * 1024


def _job_context(job: Job) -> dict:
    total = selectors.job_log_total(job.pk)
    tail = selectors.job_log_page(job.pk, max(0, total - LOG_TAIL_BYTES), None)  # polled: the end only
    return {"job": job, "mounts": selectors.job_mounts(job),
            "log_text": tail["text"], "log_total": total, "log_partial": total > LOG_TAIL_BYTES,
            "log_tail_bytes": LOG_TAIL_BYTES,
            "result_json": json.dumps(job.result, indent=2, ensure_ascii=False),
            "args_json": json.dumps(job.args, ensure_ascii=False),
            "duration": _seconds(job.started_at, job.finished_at),
            "script_duration": _seconds(job.script_started_at, job.script_finished_at)}


@require_GET
@dashboard_view
def job_detail(request: HttpRequest, ws_id: str, job_id: int) -> HttpResponse:
    workspace, role, job = _job(request, ws_id, job_id)
    return _page(request, "volumes/job_detail.html", _job_context(job), workspace, role, "jobs")


@require_GET
@dashboard_view
def job_live(request: HttpRequest, ws_id: str, job_id: int) -> HttpResponse:
    """The polled part of a run page; it stops polling itself once the job has finished."""
    workspace, role, job = _job(request, ws_id, job_id)
    return render(request, "volumes/_job_live.html", {**_job_context(job), "ws": workspace})


@require_GET
@dashboard_view
def job_log(request: HttpRequest, ws_id: str, job_id: int) -> HttpResponse:
    """The whole kept log as plain text (at most VOLUMES_JOB_LOG_MAX_BYTES and a note of what was cut)."""
    workspace, role, job = _job(request, ws_id, job_id)
    response = HttpResponse(job.log, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(False, f"job-{job.pk}.log")
    return response


@require_POST
@dashboard_view
def job_cancel(request: HttpRequest, ws_id: str, job_id: int) -> HttpResponse:
    workspace, role, job = _job(request, ws_id, job_id)
    if job.is_finished:
        raise VolumesError(f"job {job.pk} has already finished ({job.status}); there is nothing to cancel")
    job_services.job_cancel(job)
    job.refresh_from_db()
    if request.htmx:
        return _toast(render(request, "volumes/_job_live.html", {**_job_context(job), "ws": workspace}),
                      f"Cancellation of job {job.pk} requested.")
    messages.success(request, f"Cancellation of job {job.pk} requested.")
    return redirect("job", ws_id=workspace.pk, job_id=job.pk)
