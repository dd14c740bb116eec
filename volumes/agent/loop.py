"""Claiming jobs from the server and running each with the shared runner."""
from __future__ import annotations

from dataclasses import dataclass

from .client import ApiClient
from .remote import HttpRemote
from .reporter import HttpReporter


@dataclass(frozen=True)
class AgentMount:
    """A mount plan as the server decided it (MountPlan-like for the runner)."""

    name: str
    mount_path: str
    read_only: bool
    line: int = 0
    max_size: int | None = None


def claim(client: ApiClient, worker: str, about: dict | None = None) -> dict | None:
    """The next job's spec from the server, or None when nothing is queued. `about`: what the agent says about
    itself for the server's Workers page (version, cache_bytes, cache_max_bytes)."""
    response = client.request("POST", "agent/claim/", json={"worker": worker, **(about or {})})
    return None if response.status_code == 204 else response.json()


def agent_workspaces(server: str, token: str) -> list[str]:
    """The workspaces where the token's user may run agent workers."""
    rows = ApiClient(server, token, "").request("GET", "/workspaces/").json()
    return [row["id"] for row in rows if row["can_run_agents"]]


def claim_any(clients: list[ApiClient], worker: str, about: dict | None = None
              ) -> tuple[ApiClient | None, dict | None]:
    """The oldest queued job of the first workspace that has one, as (client, spec); (None, None) when idle."""
    for client in clients:
        spec = claim(client, worker, about)
        if spec is not None:
            return client, spec
    return None, None


def apply_server_settings(values: dict) -> None:
    """Run with the server's TTLs and limits, so both sides judge leases and sizes alike."""
    from django.conf import settings

    settings.VOLUMES = {**getattr(settings, "VOLUMES", {}), **values}


def run_claimed(client: ApiClient, spec: dict, cache, worker: str, echo=None) -> str:
    """Run one claimed job with the shared runner; returns its final status."""
    from ..runner.job import JobSpec, execute

    apply_server_settings(spec.get("settings") or {})
    job_id, key = spec["id"], spec["job_key"]
    reporter = HttpReporter(client, job_id, key, echo=echo)
    job_spec = JobSpec(
        job_id, spec["workspace_id"], spec["language"], spec["content"], spec.get("args") or {},
        bool(spec.get("sandbox")), [AgentMount(**m) for m in spec.get("mounts", [])], user=spec.get("user", ""),
    )
    try:
        outcome = execute(job_spec, HttpRemote(client, job_id, key), cache, reporter, holder=f"{worker} job {job_id}")
    except Exception as exc:  # never leave a claimed job running on the server
        reporter.log(f"error: the agent failed: {exc.__class__.__name__}: {exc}")
        reporter.finish("failure", error=f"agent worker error: {exc}")
        raise
    reporter.finish(outcome.status, result=outcome.result, error=outcome.error)
    return outcome.status
