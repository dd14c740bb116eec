"""The domain: workspaces, their storages, volumes with their lease, commits and jobs.

Models never touch object storage or Celery; services and the engine do.
"""
from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from .annotations import VOLUME_NAME_RE

workspace_id_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    "A workspace id is 1-63 lowercase letters, digits or dashes, starting and ending with a letter or digit.",
)


class Workspace(models.Model):
    id = models.CharField(primary_key=True, max_length=63, validators=[workspace_id_validator])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    volume_storage = models.ForeignKey(
        "ObjectStorage", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Where volumes of this workspace live. Jobs with volume annotations fail while unset.",
    )
    max_volume_size = models.BigIntegerField(
        null=True, blank=True, help_text="Optional cap in bytes on one volume's total size."
    )

    def __str__(self) -> str:
        return self.id


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin"
        MEMBER = "member"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace_id} ({self.role})"


class ObjectStorage(models.Model):
    class Kind(models.TextChoices):
        FILESYSTEM = "filesystem", "Filesystem"
        S3 = "s3", "Amazon S3 or compatible"
        AZURE = "azure", "Azure Blob Storage"
        GCS = "gcs", "Google Cloud Storage"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="storages")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    config = models.JSONField(default=dict, help_text="Backend settings: bucket, prefix, endpoint, credentials.")
    is_primary = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="unique_storage_name"),
            models.UniqueConstraint(
                fields=["workspace"], condition=models.Q(is_primary=True), name="one_primary_storage"
            ),
        ]
        ordering = ["-is_primary", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Volume(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="volumes")
    name = models.CharField(max_length=255, validators=[RegexValidator(VOLUME_NAME_RE)])
    storage = models.ForeignKey(ObjectStorage, on_delete=models.PROTECT, related_name="volumes")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_volumes"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    file_count = models.IntegerField(default=0)
    # The committed generation (0: empty, never committed) and its manifest in storage.
    generation = models.IntegerField(default=0)
    manifest_key = models.CharField(max_length=500, blank=True)
    # The lease: one holder at a time; the token increases with every acquire (fencing).
    lease_token = models.BigIntegerField(default=0)
    lease_holder = models.CharField(max_length=200, blank=True)
    lease_job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    lease_acquired_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint("workspace", Lower("name"), name="volume_name_unique_ci"),
        ]
        permissions = [
            ("read_volume", "Use the volume read-only"),
            ("write_volume", "Use the volume read-write"),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.workspace_id}/{self.name}"


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        WAITING = "waiting", "Waiting for lease"
        RUNNING = "running"
        SUCCESS = "success"
        FAILURE = "failure"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCESS, Status.FAILURE, Status.CANCELLED)

    class Language(models.TextChoices):
        PYTHON = "python", "Python"
        TYPESCRIPT = "typescript", "TypeScript"
        JAVASCRIPT = "javascript", "JavaScript"
        BASH = "bash", "Bash"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="jobs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    language = models.CharField(max_length=20, choices=Language.choices)
    content = models.TextField()
    args = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    log = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    script_started_at = models.DateTimeField(null=True, blank=True)
    script_finished_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class JobVolume(models.Model):
    """One volume mounted by one job, with what the sync did."""

    class Mode(models.TextChoices):
        READ_ONLY = "ro", "read-only"
        READ_WRITE = "rw", "read-write"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="mounts")
    volume = models.ForeignKey(Volume, null=True, on_delete=models.SET_NULL, related_name="job_mounts")
    volume_name = models.CharField(max_length=255)
    mount_path = models.CharField(max_length=1024)
    mode = models.CharField(max_length=2, choices=Mode.choices)
    lease_token = models.BigIntegerField(null=True, blank=True)
    base_generation = models.IntegerField(null=True, blank=True)
    committed_generation = models.IntegerField(null=True, blank=True)
    files_pulled = models.IntegerField(default=0)
    bytes_pulled = models.BigIntegerField(default=0)
    files_skipped = models.IntegerField(default=0)
    files_pushed = models.IntegerField(default=0)
    bytes_pushed = models.BigIntegerField(default=0)
    files_deleted = models.IntegerField(default=0)

    class Meta:
        ordering = ["volume_name"]


class VolumeCommit(models.Model):
    """One committed generation of a volume: who, when, what changed."""

    volume = models.ForeignKey(Volume, on_delete=models.CASCADE, related_name="commits")
    generation = models.IntegerField()
    parent = models.IntegerField()
    manifest_key = models.CharField(max_length=500)
    lease_token = models.BigIntegerField()
    created_at = models.DateTimeField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="commits")
    message = models.CharField(max_length=300, blank=True)
    files_added = models.IntegerField(default=0)
    files_changed = models.IntegerField(default=0)
    files_deleted = models.IntegerField(default=0)
    bytes_added = models.BigIntegerField(default=0)
    bytes_changed = models.BigIntegerField(default=0)
    bytes_deleted = models.BigIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    file_count = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["volume", "generation"], name="one_commit_per_generation")]
        ordering = ["-generation"]

    def __str__(self) -> str:
        return f"{self.volume} @ {self.generation}"
