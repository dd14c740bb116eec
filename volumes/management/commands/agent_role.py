"""Give or take a member's agent role in one workspace (may run agent workers there), or list holders."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from volumes.exceptions import VolumesError
from volumes.models import Workspace
from volumes.services.workspaces import agent_role_grant, agent_role_holders, agent_role_revoke


class Command(BaseCommand):
    help = ("Let a member run agent workers for one workspace (--revoke to take it back, --list to show who may). "
            "Workspace admins always may.")

    def add_arguments(self, parser):
        parser.add_argument("workspace_id")
        parser.add_argument("username", nargs="?")
        parser.add_argument("--revoke", action="store_true")
        parser.add_argument("--list", action="store_true")

    def handle(self, *args, **opts):
        workspace = Workspace.objects.filter(pk=opts["workspace_id"]).first()
        if workspace is None:
            raise CommandError(f"workspace {opts['workspace_id']!r} not found")
        if opts["list"]:
            for name in agent_role_holders(workspace):
                self.stdout.write(name)
            return
        if not opts["username"]:
            raise CommandError("give a username (or --list)")
        user = get_user_model().objects.filter(username=opts["username"]).first()
        if user is None:
            raise CommandError(f"user {opts['username']!r} not found")
        try:
            if opts["revoke"]:
                agent_role_revoke(workspace, user)
                self.stdout.write(f"{user} may no longer run agent workers for {workspace.id}")
            else:
                agent_role_grant(workspace, user)
                self.stdout.write(f"{user} may run agent workers for {workspace.id}")
        except VolumesError as exc:
            raise CommandError(str(exc)) from exc
