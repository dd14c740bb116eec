"""An agent worker: claims a workspace's jobs over HTTP and runs them; no database or storage access."""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from volumes import __version__
from volumes.agent import ApiClient, agent_workspaces, claim_any, resolve_token, run_claimed
from volumes.engine.cache import WorkerCache
from volumes.exceptions import VolumesError


class Command(BaseCommand):
    help = (
        "Claim and run jobs of one workspace through the server's API (token of a workspace admin or of a "
        "member with the workspace's agent role). Needs no database or storage credentials."
    )
    # No system checks and no migration checks: the agent has no database.
    requires_system_checks: list = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--server", required=True, help="Base URL of the server, e.g. https://volumes.example")
        parser.add_argument("--token", default="",
                            help="API token; better VOLUMES_TOKEN or --token-file (a command line shows in ps). "
                                 "VOLUMES_AGENT_TOKEN still works")
        parser.add_argument("--token-file", default=None,
                            help="A file holding the API token (or set VOLUMES_TOKEN_FILE)")
        parser.add_argument("--workspace", action="append", default=[],
                            help="Claim jobs of this workspace (repeatable); default: every workspace where the "
                                 "token's user may run agents")
        parser.add_argument("--cache-dir", default=None, help="Local volume cache (default VOLUMES_CACHE_DIR)")
        parser.add_argument("--cache-max-bytes", type=int, default=None)
        parser.add_argument("--name", default="", help="Worker name shown in job logs and lease holders")
        parser.add_argument("--once", action="store_true", help="Run at most one job, then exit")
        parser.add_argument("--poll", type=float, default=1.0, help="Seconds between claims while idle")

    def handle(self, *args, **opts):
        from volumes import conf

        try:
            token = resolve_token(opts["token"], opts["token_file"])
        except VolumesError as exc:
            raise CommandError(str(exc)) from exc
        if not token:
            raise CommandError("give the API token in VOLUMES_TOKEN, in a file (--token-file or VOLUMES_TOKEN_FILE), "
                               "or with --token")
        try:
            # Also proves the server answers and takes the token before anything is claimed.
            allowed = agent_workspaces(opts["server"], token)
        except VolumesError as exc:
            raise CommandError(str(exc)) from exc
        workspaces = opts["workspace"] or allowed
        refused = [ws for ws in workspaces if ws not in allowed]
        if refused:
            raise CommandError(f"this token's user may not run agent workers for {', '.join(refused)}: use a token "
                               "of a workspace admin or of a member with the agent role (manage.py agent_role)")
        if not workspaces:
            raise CommandError(
                "this token's user may not run agent workers in any workspace: use a token of a workspace admin "
                "or of a member with the workspace's agent role (manage.py agent_role)"
            )
        clients = [ApiClient(opts["server"], token, ws) for ws in workspaces]
        cache = WorkerCache(
            Path(opts["cache_dir"] or conf.get("CACHE_DIR")),
            opts["cache_max_bytes"] or conf.get("CACHE_MAX_BYTES"),
        )
        worker = opts["name"] or conf.get("WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        self.stderr.write(f"agent {worker} connected to {opts['server']}; serving workspace"
                          f"{'s' if len(workspaces) != 1 else ''} {', '.join(workspaces)}")
        echo = (lambda line: print(line, file=sys.stderr, flush=True)) if opts["verbosity"] > 1 else None
        idle_errors = 0
        about = {"version": __version__, "cache_max_bytes": cache.max_bytes}  # cache_bytes once measured
        measured = 0.0
        while not stopping:
            try:
                if time.monotonic() - measured >= 60:  # walking the cache costs: once a minute
                    about["cache_bytes"], measured = cache.usage(), time.monotonic()
                client, spec = claim_any(clients, worker, about)
            except VolumesError as exc:
                if opts["once"] or exc.status in (401, 403, 404):
                    raise CommandError(f"cannot claim jobs from {opts['server']}: {exc}") from exc
                idle_errors += 1
                self.stderr.write(f"claim failed ({exc}); retrying")
                time.sleep(min(30.0, opts["poll"] * 2 ** min(idle_errors, 5)))
                continue
            idle_errors = 0
            if spec is None:
                if opts["once"]:
                    self.stdout.write("no queued job")
                    return
                time.sleep(opts["poll"])
                continue
            self.stderr.write(f"job {spec['id']} claimed by {worker}")
            try:
                status = run_claimed(client, spec, cache, worker, echo=echo)
            except Exception as exc:  # the job was finished as a failure; keep serving the others
                if opts["once"]:
                    raise CommandError(f"job {spec['id']} failed in the agent: {exc}") from exc
                self.stderr.write(f"job {spec['id']} failed in the agent: {exc}")
                continue
            self.stdout.write(f"job {spec['id']}: {status}")
            if opts["once"]:
                return
