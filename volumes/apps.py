from django.apps import AppConfig


class VolumesConfig(AppConfig):
    name = "volumes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from . import checks  # noqa: F401  (registers system checks)
        from . import tasks  # noqa: F401  (registers the Celery tasks and services.jobs' job dispatcher)
        from .models import Membership

        # However a membership goes (service, admin site, cascade), the member's queued jobs never start.
        post_delete.connect(_membership_deleted, sender=Membership, dispatch_uid="volumes.membership_deleted")


def _membership_deleted(sender, instance, **kwargs) -> None:
    from .services.workspaces import cancel_jobs_of_removed_member

    cancel_jobs_of_removed_member(instance.workspace_id, instance.user_id)
