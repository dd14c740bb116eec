"""Create or update a workspace, its members and its primary storage (idempotent).

The storage changes only when --storage is given; a new workspace without it gets a folder under
VOLUMES_DATA_DIR. Every storage URL is checked before it is saved (reach, credentials, bucket, a
test write and delete), and a change of kind, bucket or prefix is refused while volumes live there.
"""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from volumes.exceptions import VolumesError
from volumes.models import ObjectStorage
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
            "gs://bucket/prefix?endpoint=... (only changed when given; a new workspace without it gets "
            "a folder under VOLUMES_DATA_DIR)",
        )
        parser.add_argument("--url", default="http://localhost:8000",
                            help="the dashboard's address, for the set-password links printed for new users")
        parser.add_argument("--no-volume-storage", action="store_true", help="do not select it as volume storage")

    def handle(self, *args, **opts):
        storage = opts["storage"]
        has_storage = ObjectStorage.objects.filter(workspace_id=opts["workspace_id"]).exists()
        if storage is None and not has_storage:
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
        except VolumesError as exc:
            raise CommandError(exc.message) from exc
        selected = workspace.volume_storage.name if workspace.volume_storage else "none"
        self.stdout.write(f"workspace {workspace.id} ready (volume storage: {selected})")
        self._say_how_to_set_passwords(opts["admin"] + opts["member"], opts["url"])

    def _say_how_to_set_passwords(self, usernames: list[str], base_url: str) -> None:
        """A user made here has no password: say how they get one (a link, or changepassword)."""
        from django.contrib.auth import get_user_model

        from volumes.services.accounts import password_link_path

        for user in get_user_model().objects.filter(username__in=usernames).order_by("username"):
            if user.has_usable_password():
                continue
            link = base_url.rstrip("/") + password_link_path(user)
            self.stdout.write(
                f"{user.username} has no password yet: send them {link} to choose one (works once, for "
                f"{settings.PASSWORD_RESET_TIMEOUT // 86400} days), or set it here with "
                f"`python manage.py changepassword {user.username}`. Admins can make a new link under "
                "Settings > Members.")
