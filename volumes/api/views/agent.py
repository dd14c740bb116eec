"""Engine endpoints for agent workers: claim a job, then lease, pull, push and report over HTTP.

Who may call them: workspace admins and members with the workspace's agent role (token auth).
Every request about a job carries the `X-Job-Key` the claim returned, so only the agent user that
claimed a job may act on it, and only while the job runs (409 `job_finished` after); volume access
is what `jobs.job_prepare` decided for the job's user when the job started, and the claim only
hands out jobs whose volumes the agent's own user may use as well (a read-only mount never pushes).
"""
from __future__ import annotations

import json

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers as drf
from rest_framework.response import Response

from ...exceptions import LeaseHeld, LeaseTimeout, VolumesError
from ...ops.metrics import AGENT_PROXY_BYTES
from ...services import agent
from ...services.jobs import JobReporter
from ...services.workers import worker_heartbeat
from .. import access
from .. import serializers as s
from ..http import RawBodyParser, body_stream
from .common import ERRORS, ApiView, validated

JOB_KEY = OpenApiParameter("X-Job-Key", str, OpenApiParameter.HEADER, required=True,
                           description="The job_key returned by the claim")
TOKEN = OpenApiParameter("token", int, required=True, description="The lease's fencing token")
# Reads take either: a read-write mount reads under its lease, a read-only mount under its pin.
READ_UNDER = [OpenApiParameter("token", int, description="The lease's fencing token (or give pin)"),
              OpenApiParameter("pin", int, description="The pin's id, for a read-only mount (or give token)")]
OK = inline_serializer("Ok", {"ok": drf.BooleanField()})



class AgentView(ApiView):
    def job(self, request, ws: str, job_id: int, allow_finished: bool = False):
        workspace, _ = access.workspace(request, ws)
        return agent.agent_job(workspace, request.user, job_id, request.headers.get("X-Job-Key", ""),
                               allow_finished=allow_finished)


def _token(request) -> int:
    raw = request.query_params.get("token")
    if raw is None or not raw.lstrip("-").isdigit():
        raise VolumesError("give the lease's fencing token as ?token=N")
    return int(raw)


def _read_under(request) -> tuple[int | None, int | None]:
    """(token, None) for a read under the lease, (None, pin) for a read under a pin."""
    raw = request.query_params.get("pin")
    if raw is None:
        return _token(request), None
    if not raw.isdigit() or len(raw) > 18:
        raise VolumesError("give the pin's id as ?pin=N (the pin_id the pin request returned)")
    return None, int(raw)


class ClaimView(AgentView):
    @extend_schema(
        summary="Claim the oldest queued job of the workspace (204 when none)", tags=["agent"],
        request=s.ClaimSerializer, responses={200: s.JobSpecSerializer, 204: None, **ERRORS},
    )
    def post(self, request, ws: str):
        workspace, _ = access.workspace(request, ws)
        data = validated(s.ClaimSerializer, request.data)
        claimed = agent.agent_claim_next(workspace, request.user, data["worker"])
        worker_heartbeat(f"agent {data['worker']}", "agent", workspace=workspace.pk, version=data["version"],
                         cache_bytes=data["cache_bytes"], cache_max_bytes=data["cache_max_bytes"], min_interval=5)
        if claimed is None:
            return Response(status=204)
        job, max_size = claimed.job, claimed.job.workspace.max_volume_size
        spec = {
            "id": job.pk, "workspace_id": job.workspace_id, "user": job.user.username, "language": job.language,
            "content": job.content, "args": job.args or {}, "sandbox": claimed.sandbox,
            "mounts": [{"name": p.name, "mount_path": p.mount_path, "read_only": p.read_only, "line": p.line,
                        "max_size": max_size} for p in claimed.plans],
            "job_key": claimed.key, "settings": agent.agent_settings(),
        }
        return Response(s.JobSpecSerializer(spec).data)


# Leases ------------------------------------------------------------------------------------------

class AcquireView(AgentView):
    @extend_schema(
        summary="Take the volume's lease for the job, waiting at most 25 s; 409 with the holder if still held",
        tags=["agent"], parameters=[JOB_KEY], request=s.AcquireSerializer,
        responses={200: s.LeaseSerializer, 409: OpenApiResponse(description="Still held: retry"), **ERRORS},
    )
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        data = validated(s.AcquireSerializer, request.data)
        try:
            lease = agent.agent_acquire(job, name, data["holder"], data.get("wait"))
        except LeaseTimeout:
            who = agent.current_holder(job, name)
            raise LeaseHeld(
                f"volume {name!r} is held by {who.describe() if who else 'another job'}",
                holder=who.holder if who else "", holder_job=(who.job_id or 0) if who else 0,
                since=who.since.isoformat() if who and who.since else "",
                description=who.describe() if who else "",
                waiting=who.waiting if who else 0, readers=who.readers if who else 0,
            ) from None
        return Response(s.LeaseSerializer(lease.__dict__).data)


class RenewView(AgentView):
    @extend_schema(summary="Renew the job's lease", tags=["agent"], parameters=[JOB_KEY],
                   request=s.TokenSerializer, responses={200: OK, 409: OpenApiResponse(), **ERRORS})
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        agent.agent_renew(job, name, validated(s.TokenSerializer, request.data)["token"])
        return Response({"ok": True})


class ReleaseView(AgentView):
    @extend_schema(summary="Release the job's lease", tags=["agent"], parameters=[JOB_KEY],
                   request=s.TokenSerializer,
                   responses={200: inline_serializer("Released", {"released": drf.BooleanField()}), **ERRORS})
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id, allow_finished=True)  # finishing released it already: False
        released = agent.agent_release(job, name, validated(s.TokenSerializer, request.data)["token"])
        return Response({"released": released})


# Pins: read-only mounts take no lease -----------------------------------------------------------

class PinView(AgentView):
    @extend_schema(
        summary="Pin the volume's committed generation for a read-only mount (never waits for the lease)",
        tags=["agent"], parameters=[JOB_KEY], request=s.PinInputSerializer, responses={200: s.PinSerializer, **ERRORS},
    )
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        pin = agent.agent_pin(job, name, validated(s.PinInputSerializer, request.data)["holder"])
        return Response(s.PinSerializer(pin.__dict__).data)


class PinRenewView(AgentView):
    @extend_schema(summary="Renew the job's pin", tags=["agent"], parameters=[JOB_KEY],
                   request=s.PinIdSerializer, responses={200: OK, 409: OpenApiResponse(), **ERRORS})
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        agent.agent_renew_pin(job, name, validated(s.PinIdSerializer, request.data)["pin"])
        return Response({"ok": True})


class PinReleaseView(AgentView):
    @extend_schema(summary="Release the job's pin", tags=["agent"], parameters=[JOB_KEY],
                   request=s.PinIdSerializer,
                   responses={200: inline_serializer("PinReleased", {"released": drf.BooleanField()}), **ERRORS})
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id, allow_finished=True)  # finishing released it already: False
        released = agent.agent_release_pin(job, name, validated(s.PinIdSerializer, request.data)["pin"])
        return Response({"released": released})


# Manifests and blobs -----------------------------------------------------------------------------

class ManifestView(AgentView):
    @extend_schema(
        summary="The manifest of the generation the lease or pin was taken at", tags=["agent"],
        parameters=[JOB_KEY, *READ_UNDER, OpenApiParameter("generation", int, required=True),
                    OpenApiParameter("stored", bool, description="The document as stored: where it names its "
                                     "parts, fetch those the agent lacks from manifest/parts/")],
        responses={(200, "application/json"): OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        generation = request.query_params.get("generation", "")
        if not generation.isdigit():
            raise VolumesError("give the lease's generation as ?generation=N")
        token, pin = _read_under(request)
        if request.query_params.get("stored") == "1":
            document = agent.agent_manifest_document(job, name, token, int(generation), pin_id=pin)
            return HttpResponse(document, content_type="application/json")
        manifest = agent.agent_manifest(job, name, token, int(generation), pin_id=pin)
        # As encoded, not parsed and rendered again: 100,000 entries are 19 MB of JSON. With the runs of its parts,
        # so that the agent's next read after another worker's commit fetches only the parts that commit wrote.
        return HttpResponse(manifest.to_json(runs=True), content_type="application/json")


class ManifestPartsView(AgentView):
    @extend_schema(
        summary="Parts of a generation's stored manifest, each after its length and a newline", tags=["agent"],
        parameters=[JOB_KEY], request=s.ManifestPartsSerializer,
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, **ERRORS},
    )
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        data = validated(s.ManifestPartsSerializer, request.data)
        parts = agent.agent_manifest_parts(job, name, data.get("token"), data["generation"], data["digests"],
                                           pin_id=data.get("pin"))
        return HttpResponse(parts, content_type="application/octet-stream")


class MissingView(AgentView):
    @extend_schema(
        summary="Which of these blobs the volume lacks", tags=["agent"], parameters=[JOB_KEY],
        request=s.MissingSerializer,
        responses={200: inline_serializer("MissingBlobs", {
            "missing": drf.ListField(child=drf.CharField()),
            "uploads": drf.DictField(child=s.PresignedSerializer(), required=False,
                                     help_text="With direct: a presigned PUT per missing blob where the storage signs"),
        }), **ERRORS},
    )
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        data = validated(s.MissingSerializer, request.data)
        missing = agent.agent_missing(job, name, data["token"], data["hashes"], data.get("stored"))
        answer = {"missing": sorted(missing)}
        if data["direct"]:
            answer["uploads"] = agent.agent_blob_urls(job, name, data["token"], missing, upload=True)
        return Response(answer)


class BlobUrlsView(AgentView):
    @extend_schema(
        summary="Presigned downloads of these blobs, straight from storage (none where it cannot sign)",
        tags=["agent"], parameters=[JOB_KEY], request=s.BlobUrlsSerializer,
        responses={200: inline_serializer("PresignedDownloads",
                                          {"downloads": drf.DictField(child=s.PresignedSerializer())}),
                   **ERRORS},
    )
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        data = validated(s.BlobUrlsSerializer, request.data)
        return Response({"downloads": agent.agent_blob_urls(job, name, data.get("token"), data["hashes"], upload=False,
                                                            pin_id=data.get("pin"))})


class BlobView(AgentView):
    parser_classes = [RawBodyParser]

    @extend_schema(summary="Download a blob", tags=["agent"], parameters=[JOB_KEY, *READ_UNDER],
                   responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, **ERRORS})
    def get(self, request, ws: str, job_id: int, name: str, digest: str):
        job = self.job(request, ws, job_id)
        token, pin = _read_under(request)
        body = agent.agent_blob_open(job, name, token, digest, pin_id=pin)
        return StreamingHttpResponse(_counted(body), content_type="application/octet-stream")

    @extend_schema(
        summary="Upload a blob; its bytes must hash to the name (400 otherwise)", tags=["agent"],
        parameters=[JOB_KEY, TOKEN], request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={201: inline_serializer("Stored", {"stored": drf.BooleanField()}), **ERRORS},
    )
    def put(self, request, ws: str, job_id: int, name: str, digest: str):
        job = self.job(request, ws, job_id)
        stored = agent.agent_blob_put(job, name, _token(request), digest, _CountedReader(body_stream(request)))
        return Response({"stored": stored}, status=201)


def _counted(chunks):
    """A download's chunks, counted as agent proxy bytes as they go out."""
    for chunk in chunks:
        AGENT_PROXY_BYTES.labels("download").inc(len(chunk))
        yield chunk


class _CountedReader:
    """An upload's body, counted as agent proxy bytes as it is read."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def read(self, *args) -> bytes:
        data = self.stream.read(*args)
        AGENT_PROXY_BYTES.labels("upload").inc(len(data))
        return data

    def __getattr__(self, name):
        return getattr(self.stream, name)


class CommitView(AgentView):
    @extend_schema(
        summary="Commit a manifest as the next generation under the fencing token", tags=["agent"],
        parameters=[JOB_KEY], request=s.CommitInputSerializer,
        responses={200: inline_serializer("Committed", {"generation": drf.IntegerField(),
                                                        "manifest_key": drf.CharField()}),
                   409: OpenApiResponse(description="Lease lost or volume moved on"), **ERRORS},
    )
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        data = validated(s.CommitInputSerializer, request.data)
        manifest_json = json.dumps(data["manifest"], ensure_ascii=False).encode("utf-8")
        generation, key = agent.agent_commit(job, name, data["token"], data["parent"], manifest_json,
                                             data["message"])
        return Response({"generation": generation, "manifest_key": key})


class CommitBatchView(AgentView):
    @extend_schema(
        summary="Commit the manifests of several volumes of the job at once: all or none", tags=["agent"],
        parameters=[JOB_KEY], request=s.CommitBatchSerializer,
        responses={200: inline_serializer("CommittedBatch", {"committed": drf.ListField(child=inline_serializer(
            "CommittedVolume", {"name": drf.CharField(), "generation": drf.IntegerField(),
                                "manifest_key": drf.CharField()}))}),
                   409: OpenApiResponse(description="A lease was lost or a volume moved on; nothing was committed"),
                   **ERRORS},
    )
    def post(self, request, ws: str, job_id: int):
        job = self.job(request, ws, job_id)
        rows = validated(s.CommitBatchSerializer, request.data)["volumes"]
        items = [(row["name"], row["token"], row["parent"],
                  json.dumps(row["manifest"], ensure_ascii=False).encode("utf-8"), row["message"]) for row in rows]
        results = agent.agent_commit_many(job, items)
        return Response({"committed": [{"name": row["name"], "generation": generation, "manifest_key": key}
                                       for row, (generation, key) in zip(rows, results)]})


# Reports -----------------------------------------------------------------------------------------

class LogView(AgentView):
    @extend_schema(summary="Append lines to the job's log", tags=["agent"], parameters=[JOB_KEY],
                   request=s.LogSerializer, responses={200: OK, **ERRORS})
    def post(self, request, ws: str, job_id: int):
        agent.agent_log(self.job(request, ws, job_id), validated(s.LogSerializer, request.data)["text"])
        return Response({"ok": True})


class StatusView(AgentView):
    @extend_schema(summary="Set the running job's status (waiting or running)", tags=["agent"],
                   parameters=[JOB_KEY], request=s.StatusSerializer, responses={200: OK, **ERRORS})
    def post(self, request, ws: str, job_id: int):
        job = self.job(request, ws, job_id)
        JobReporter(job.pk).status(validated(s.StatusSerializer, request.data)["status"])
        return Response({"ok": True})


class HeartbeatView(AgentView):
    @extend_schema(summary="The agent is alive; answers whether the job must stop", tags=["agent"],
                   parameters=[JOB_KEY], request=None,
                   responses={200: inline_serializer("Heartbeat", {"cancel": drf.BooleanField()}), **ERRORS})
    def post(self, request, ws: str, job_id: int):
        job = self.job(request, ws, job_id)
        if job.worker.startswith("agent "):
            worker_heartbeat(job.worker, "agent", workspace=job.workspace_id, min_interval=5)
        return Response({"cancel": agent.agent_heartbeat(job)})


class ScriptEventView(AgentView):
    @extend_schema(summary="The script started or finished", tags=["agent"], parameters=[JOB_KEY],
                   request=s.ScriptEventSerializer, responses={200: OK, **ERRORS})
    def post(self, request, ws: str, job_id: int):
        job = self.job(request, ws, job_id)
        reporter = JobReporter(job.pk)
        if validated(s.ScriptEventSerializer, request.data)["event"] == "started":
            reporter.script_started()
        else:
            reporter.script_finished()
        return Response({"ok": True})


class MountFiguresView(AgentView):
    @extend_schema(summary="Record a mount's lease and sync figures", tags=["agent"], parameters=[JOB_KEY],
                   request=s.FiguresSerializer, responses={200: OK, **ERRORS})
    def post(self, request, ws: str, job_id: int, name: str):
        job = self.job(request, ws, job_id)
        agent.agent_mount_figures(job, name, validated(s.FiguresSerializer, request.data)["figures"])
        return Response({"ok": True})


class FinishView(AgentView):
    @extend_schema(summary="Finish the job with its outcome", tags=["agent"], parameters=[JOB_KEY],
                   request=s.FinishSerializer, responses={200: OK, **ERRORS})
    def post(self, request, ws: str, job_id: int):
        job = self.job(request, ws, job_id)
        data = validated(s.FinishSerializer, request.data)
        agent.agent_finish(job, data["status"], data["result"], data["error"])
        return Response({"ok": True})
