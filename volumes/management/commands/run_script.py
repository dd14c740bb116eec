"""Run one script as a job, synchronously, through the same code path as a Celery worker."""
import json
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from volumes.annotations import language_for_filename
from volumes.exceptions import VolumesError
from volumes.models import Job, Workspace
from volumes.runner.run import job_run
from volumes.services.jobs import job_submit


class Command(BaseCommand):
    help = "Run FILE (.py, .ts, .js, .sh) as a job with its volumes; log to stderr, result JSON last on stdout."
    # Running a job needs none of the system checks, and they import every view, serializer and admin page:
    # 27 MB and a few tenths of a second in every run (`manage.py check` and the servers' start run them).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--workspace", required=True)
        parser.add_argument("--user", required=True)
        parser.add_argument("--args", dest="job_args", default="{}", help="JSON object of arguments for main()")

    def handle(self, *args, **opts):
        path = Path(opts["file"])
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        try:
            job_args = json.loads(opts["job_args"])
        except ValueError as exc:
            raise CommandError(f"--args is not valid JSON: {exc}") from exc
        workspace = Workspace.objects.filter(pk=opts["workspace"]).first()
        if workspace is None:
            raise CommandError(f"workspace {opts['workspace']!r} does not exist; create it with create_workspace")
        user = get_user_model().objects.filter(username=opts["user"]).first()
        if user is None:
            raise CommandError(f"user {opts['user']!r} does not exist")
        try:
            language = language_for_filename(path.name)
            job = job_submit(workspace, user, language, content, job_args, enqueue=False)
        except VolumesError as exc:
            raise CommandError(str(exc)) from exc
        job = job_run(job.pk, echo=lambda line: print(line, file=sys.stderr, flush=True))
        if job.status != Job.Status.SUCCESS:
            print(f"error: {job.error}", file=sys.stderr)
            sys.exit(1)
        self.stdout.write(json.dumps(job.result))
