"""Create the demo workspace and its admin for the README's run command (idempotent)."""
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from volumes.services.workspaces import workspace_ensure


class Command(BaseCommand):
    help = "Create workspace 'demo' with filesystem volume storage and an admin user; print the login."

    def handle(self, *args, **opts):
        username = os.environ.get("VOLUMES_ADMIN_USER", "admin")
        password = os.environ.get("VOLUMES_ADMIN_PASSWORD")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None or password or not user.has_usable_password():
            password = password or secrets.token_urlsafe(9)
            user = user or User(username=username)
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            shown = password
        else:
            shown = "(unchanged; set VOLUMES_ADMIN_PASSWORD to reset it)"
        storage = settings.VOLUMES["DATA_DIR"] / "storage"
        ws = workspace_ensure("demo", name="Demo", admins=[username])
        if ws.volume_storage_id is None:
            workspace_ensure("demo", storage_url=f"file://{storage}")
        self.stdout.write(f"Log in as {username} / {shown}")
