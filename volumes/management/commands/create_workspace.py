"""Create or update a workspace, its members and its primary storage (idempotent)."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from volumes.services.workspaces import workspace_ensure


class Command(BaseCommand):
    help = "Create or update a workspace with members and a primary storage (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("workspace_id")
        parser.add_argument("--name")
        parser.add_argument("--admin", action="append", default=[], metavar="USER")
        parser.add_argument("--member", action="append", default=[], metavar="USER")
        parser.add_argument(
            "--storage",
            metavar="URL",
            help="file:///abs/path, s3://bucket/prefix?endpoint_url=..., az://container/prefix?connection_string=..., "
            "gs://bucket/prefix?endpoint=... (default: a folder under VOLUMES_DATA_DIR)",
        )
        parser.add_argument("--no-volume-storage", action="store_true", help="do not select it as volume storage")

    def handle(self, *args, **opts):
        storage = opts["storage"]
        if storage is None:
            storage = f"file://{settings.VOLUMES['DATA_DIR'] / 'storage'}"
        try:
            workspace = workspace_ensure(
                opts["workspace_id"],
                name=opts["name"],
                admins=opts["admin"],
                members=opts["member"],
                storage_url=storage,
                select_volume_storage=not opts["no_volume_storage"],
            )
        except (ValueError, ValidationError) as exc:
            messages = getattr(exc, "messages", None) or [str(exc)]
            raise CommandError("; ".join(messages)) from exc
        selected = workspace.volume_storage.name if workspace.volume_storage else "none"
        self.stdout.write(f"workspace {workspace.id} ready (volume storage: {selected})")
