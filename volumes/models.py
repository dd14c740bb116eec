"""The domain: workspaces, their storages, volumes with their lease, commits and jobs.

Models never touch object storage or Celery; services and the engine do.
"""
from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Sum
from django.db.models.functions import Lower

from .annotations import VOLUME_NAME_RE
from .utf8 import char_end, char_start

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
        null=True, blank=True,
        help_text="Optional cap in bytes on one volume's storage: its files and the history it keeps.",
    )
    storage_quota = models.BigIntegerField(
        null=True, blank=True,
        help_text="Optional cap in bytes on the storage of all volumes of the workspace, history included.",
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
    runs_agents = models.BooleanField(
        default=False, help_text="The agent role: may run agent workers for this workspace (admins always may)."
    )

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


class VolumeQuerySet(models.QuerySet):
    def named(self, workspace, name: str) -> "VolumeQuerySet":
        """The volume called `name` in `workspace` (a Workspace or its id): names are unique without case."""
        workspace_id = workspace.pk if isinstance(workspace, Workspace) else workspace
        return self.filter(workspace_id=workspace_id, name__iexact=name)


class LiveVolumeManager(models.Manager.from_queryset(VolumeQuerySet)):
    """Volumes not in the trash: every lookup by name, list, job and lease sees only these."""

    def get_queryset(self):
        return super().get_queryset().filter(trashed_at__isnull=True)


class Volume(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="volumes")
    name = models.CharField(max_length=255, validators=[RegexValidator(VOLUME_NAME_RE)])
    storage = models.ForeignKey(ObjectStorage, on_delete=models.PROTECT, related_name="volumes")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_volumes"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                      help_text="The last job that mounted the volume, reading or writing.")
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
    max_size_bytes = models.BigIntegerField(
        null=True, blank=True,
        help_text="Optional cap in bytes on this volume's storage (files and kept history); the workspace's "
                  "cap applies too.",
    )
    # In the workspace's trash since (None: live). The name stays taken until it is purged.
    trashed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    trashed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = LiveVolumeManager()
    all_objects = VolumeQuerySet.as_manager()  # the trash too: trash pages, restore, purge, name checks

    @property
    def size_cap(self) -> int | None:
        """The cap enforced on this volume's storage (files and kept history): its own or the workspace's
        cap for every volume, whichever is smaller; None when neither is set."""
        caps = [cap for cap in (self.max_size_bytes, self.workspace.max_volume_size) if cap is not None]
        return min(caps) if caps else None

    class Meta:
        base_manager_name = "all_objects"
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

    @property
    def log(self) -> str:
        """The kept log (head, a note of what was cut, tail); see `services.jobs.job_log_append`."""
        return JobLogChunk.objects.text(self.pk)


LOG_CUT_NOTE = "\n[... {cut:,} bytes of the log were cut here; VOLUMES_JOB_LOG_MAX_BYTES keeps the first and last part ...]\n"
LOG_PAGE_MAX = 1024 * 1024


class JobLogQuerySet(models.QuerySet):
    """Reading a job's kept log (services.jobs.job_log_append writes it)."""

    def total(self, job_id: int) -> int:
        """Bytes the job logged, including what was cut."""
        last = self.filter(job_id=job_id).order_by("-offset").values_list("offset", "size").first()
        return last[0] + last[1] if last else 0

    def text(self, job_id: int) -> str:
        """The kept log: every kept part, with a note where bytes were cut."""
        return self.page(job_id, 0, None)["text"]

    def page(self, job_id: int, offset: int, limit: int | None = 64 * 1024) -> dict:
        """Kept log text from byte `offset` of everything logged, about `limit` bytes of it (whole
        characters; None: all), with a note where bytes were cut; `next_offset` is None at the end."""
        parts, pos, used = [], max(0, offset), 0
        budget = None if limit is None else max(1, min(limit, LOG_PAGE_MAX))
        rows = (self.filter(job_id=job_id).annotate(end=F("offset") + F("size")).filter(end__gt=pos)
                .order_by("offset").values_list("offset", "size", "text"))
        for start, _size, text in rows.iterator():
            if budget is not None and used >= budget:
                break
            if start > pos:
                parts.append(LOG_CUT_NOTE.format(cut=start - pos))
                pos = start
            raw = text.encode()
            i = char_start(raw, pos - start)
            j = len(raw) if budget is None else char_end(raw, min(len(raw), i + budget - used))
            if j <= i:
                j = char_start(raw, i + 1)  # at least one whole character per page
            parts.append(raw[i:j].decode())
            pos, used = start + j, used + j - i
        total = self.total(job_id)
        kept = self.filter(job_id=job_id).aggregate(n=Sum("size"))["n"] or 0
        return {"text": "".join(parts), "offset": max(0, offset), "next_offset": pos if pos < total else None,
                "total_bytes": total, "cut_bytes": total - kept}


class JobLogChunk(models.Model):
    """One appended piece of a job's log. Appends insert rows; the oldest rows after the head are
    deleted once the tail passes its share of VOLUMES_JOB_LOG_MAX_BYTES."""

    objects = JobLogQuerySet.as_manager()

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_chunks")
    offset = models.BigIntegerField(help_text="Byte offset of this text in everything the job logged.")
    size = models.IntegerField(help_text="Bytes of this text (UTF-8).")
    text = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "offset"], name="one_log_chunk_per_offset")]
        ordering = ["job", "offset"]


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
    # Bytes of blobs this generation has that its parent did not: what keeping it in history costs.
    blob_bytes_added = models.BigIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    file_count = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["volume", "generation"], name="one_commit_per_generation")]
        ordering = ["-generation"]

    def __str__(self) -> str:
        return f"{self.volume} @ {self.generation}"


class VolumePin(models.Model):
    """A reader's hold on one committed generation: no lease, no writes. Expires like a lease (by the
    database clock) unless its job renews it; GC keeps every object a live pin's generation needs."""

    volume = models.ForeignKey(Volume, on_delete=models.CASCADE, related_name="pins")
    generation = models.IntegerField()
    manifest_key = models.CharField(max_length=500, blank=True)
    holder = models.CharField(max_length=200)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.CASCADE, related_name="pins")
    pinned_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["volume", "generation", "pinned_at"]

    def __str__(self) -> str:
        return f"{self.volume} @ {self.generation} pinned by {self.holder}"


class ApiToken(models.Model):
    """A named API token of one user. Only a hash of the key is kept: the key is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="The key's first characters, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"


class WorkerHeartbeat(models.Model):
    """A process that runs jobs (a Celery worker process or an agent worker), as it last reported itself.
    `name` is what its jobs record in Job.worker, so its running job is the running Job with that worker."""

    class Kind(models.TextChoices):
        CELERY = "celery", "Celery worker"
        AGENT = "agent", "Agent worker"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Agents serve some workspaces (they are listed here); Celery workers serve all of them (empty).
    workspaces = models.JSONField(default=list, blank=True)
    version = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    cache_bytes = models.BigIntegerField(null=True, blank=True)
    cache_max_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name}"
