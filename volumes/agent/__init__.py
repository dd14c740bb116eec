"""Agent workers: the engine's Remote and the runner's Reporter over the REST API.

An agent worker holds only a server URL and an API token: no database, no storage
credentials. By role:

- `client`: `ApiClient`, HTTP against one workspace with the token and retries, and the
  server's answers turned back into the domain's errors;
- `remote`: `HttpRemote`, the engine's Remote over the agent endpoints (`/api/w/{ws}/agent/...`),
  with `direct` sending blobs straight to storage where the server presigns them;
- `reporter`: `HttpReporter`, the job's log, status, heartbeat and figures;
- `loop`: claiming jobs and running each with the very same `volumes.runner.job.execute` as
  in-process workers.
"""
from .client import ApiClient, connection_error, error_from_response, resolve_token
from .direct import DirectTransfers
from .loop import AgentMount, agent_workspaces, apply_server_settings, claim, claim_any, run_claimed
from .remote import HttpRemote
from .reporter import HttpReporter

__all__ = [
    "AgentMount", "ApiClient", "DirectTransfers", "HttpRemote", "HttpReporter", "agent_workspaces",
    "apply_server_settings", "claim", "claim_any", "connection_error", "error_from_response", "resolve_token",
    "run_claimed",
]
