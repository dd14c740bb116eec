from django.apps import AppConfig


class VolumesConfig(AppConfig):
    name = "volumes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
