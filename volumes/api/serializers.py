"""Input validation and output shapes of the REST API."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from rest_framework import serializers

from ..engine.manifest import DIR, FILE, LINK
from ..models import Job, JobVolume, VolumeCommit

ACCESS_LEVELS = ("read", "write")


# Volumes -----------------------------------------------------------------------------------------

class AccessSerializer(serializers.Serializer):
    level = serializers.CharField(allow_null=True, help_text="write, read or null")
    can_write = serializers.BooleanField()
    can_delete = serializers.BooleanField()
    can_share = serializers.BooleanField()
    is_admin = serializers.BooleanField()
    is_owner = serializers.BooleanField()


class LeaseInfoSerializer(serializers.Serializer):
    holder = serializers.CharField()
    job = serializers.IntegerField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class VolumeSerializer(serializers.Serializer):
    """One volume as its caller sees it (`VolumeRow` of the selectors)."""

    name = serializers.CharField(source="volume.name")
    owner = serializers.CharField(source="volume.owner.username", allow_null=True, default=None)
    size_bytes = serializers.IntegerField(source="volume.size_bytes")
    file_count = serializers.IntegerField(source="volume.file_count")
    generation = serializers.IntegerField(source="volume.generation")
    created_at = serializers.DateTimeField(source="volume.created_at")
    last_used_at = serializers.DateTimeField(source="volume.last_used_at", allow_null=True)
    leased = serializers.BooleanField()
    lease = serializers.SerializerMethodField()
    access = AccessSerializer()

    def get_lease(self, row) -> LeaseInfoSerializer(allow_null=True):  # type: ignore[valid-type]
        if not row.leased:
            return None
        v = row.volume
        return {"holder": v.lease_holder, "job": v.lease_job_id, "since": v.lease_acquired_at,
                "expires_at": v.lease_expires_at}


class VolumeCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)


# Files -------------------------------------------------------------------------------------------

class EntrySerializer(serializers.Serializer):
    """One file, folder or symlink of a volume generation."""

    name = serializers.SerializerMethodField()
    path = serializers.CharField()
    type = serializers.ChoiceField(choices=[FILE, DIR, LINK])
    size = serializers.IntegerField()
    hash = serializers.CharField(help_text="SHA-256 of the contents (files only)")
    mode = serializers.IntegerField()
    modified_at = serializers.SerializerMethodField()
    target = serializers.CharField(help_text="The link's target text (links only); never followed")
    generation = serializers.IntegerField(source="gen", help_text="The generation that last changed it")

    def get_name(self, entry) -> str:
        return entry.path.rpartition("/")[2]

    def get_modified_at(self, entry) -> datetime | None:
        if not entry.mtime_ns:
            return None
        return datetime.fromtimestamp(entry.mtime_ns / 1e9, tz=timezone.utc)


class FolderSerializer(serializers.Serializer):
    path = serializers.CharField()
    generation = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Entries in the folder (all pages)")
    entries = EntrySerializer(many=True)


class ChangeSerializer(serializers.Serializer):
    """The outcome of a file operation: the generation it committed."""

    generation = serializers.IntegerField()
    path = serializers.CharField(required=False)


class FolderCreateSerializer(serializers.Serializer):
    path = serializers.CharField(max_length=8192, trim_whitespace=False)


class MoveSerializer(serializers.Serializer):
    src = serializers.CharField(max_length=8192, trim_whitespace=False)
    dst = serializers.CharField(max_length=8192, trim_whitespace=False)


# Shares ------------------------------------------------------------------------------------------

class ShareSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["user", "group"])
    name = serializers.CharField()
    access = serializers.ChoiceField(choices=ACCESS_LEVELS)


class _PrincipalSerializer(serializers.Serializer):
    user = serializers.CharField(required=False, max_length=150)
    group = serializers.CharField(required=False, max_length=150)

    def validate(self, attrs):
        if bool(attrs.get("user")) == bool(attrs.get("group")):
            raise serializers.ValidationError("give exactly one of `user` or `group`")
        return attrs


class ShareGrantSerializer(_PrincipalSerializer):
    access = serializers.ChoiceField(choices=ACCESS_LEVELS)


class ShareRevokeSerializer(_PrincipalSerializer):
    pass


# History -----------------------------------------------------------------------------------------

class CommitSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", allow_null=True, default=None)
    job = serializers.IntegerField(source="job_id", allow_null=True)

    class Meta:
        model = VolumeCommit
        fields = [
            "generation", "parent", "created_at", "user", "job", "message", "files_added", "files_changed",
            "files_deleted", "bytes_added", "bytes_changed", "bytes_deleted", "size_bytes", "file_count",
        ]


# Jobs --------------------------------------------------------------------------------------------

class JobCreateSerializer(serializers.Serializer):
    language = serializers.ChoiceField(choices=Job.Language.choices)
    content = serializers.CharField(max_length=1_000_000, trim_whitespace=False)
    args = serializers.DictField(required=False, default=dict)

    def validate_content(self, value: str) -> str:
        if "\x00" in value:
            raise serializers.ValidationError("the script contains a NUL character")
        return value

    def validate_args(self, value: dict) -> dict:
        if "\\u0000" in json.dumps(value):
            raise serializers.ValidationError("the arguments contain a NUL character")
        return value


class JobMountSerializer(serializers.ModelSerializer):
    volume = serializers.CharField(source="volume_name")

    class Meta:
        model = JobVolume
        fields = [
            "volume", "mount_path", "mode", "lease_token", "base_generation", "committed_generation",
            "files_pulled", "bytes_pulled", "files_skipped", "files_pushed", "bytes_pushed", "files_deleted",
        ]


class JobSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")
    mounts = JobMountSerializer(many=True, read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "status", "language", "user", "args", "worker", "cancel_requested", "created_at", "started_at",
            "script_started_at", "script_finished_at", "finished_at", "result", "error", "mounts",
        ]


class JobDetailSerializer(JobSerializer):
    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["content", "log"]


# Agent workers -----------------------------------------------------------------------------------

class ClaimSerializer(serializers.Serializer):
    worker = serializers.CharField(max_length=150, required=False, default="agent")


class MountPlanSerializer(serializers.Serializer):
    name = serializers.CharField()
    mount_path = serializers.CharField()
    read_only = serializers.BooleanField()
    line = serializers.IntegerField()
    max_size = serializers.IntegerField(allow_null=True)


class JobSpecSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    workspace_id = serializers.CharField()
    user = serializers.CharField()
    language = serializers.CharField()
    content = serializers.CharField()
    args = serializers.DictField()
    sandbox = serializers.BooleanField()
    mounts = MountPlanSerializer(many=True)
    job_key = serializers.CharField(help_text="Send as the X-Job-Key header with every request about this job")
    settings = serializers.DictField(help_text="Server settings the agent runs the job with (TTL, limits)")


class AcquireSerializer(serializers.Serializer):
    holder = serializers.CharField(max_length=200)
    wait = serializers.FloatField(required=False, min_value=0, help_text="Seconds to wait in this request (<= 25)")


class LeaseSerializer(serializers.Serializer):
    volume_id = serializers.IntegerField()
    workspace_id = serializers.CharField()
    volume_name = serializers.CharField()
    token = serializers.IntegerField()
    holder = serializers.CharField()
    generation = serializers.IntegerField()
    manifest_key = serializers.CharField(allow_blank=True)
    ttl = serializers.FloatField()


class TokenSerializer(serializers.Serializer):
    token = serializers.IntegerField()


class MissingSerializer(TokenSerializer):
    hashes = serializers.ListField(child=serializers.CharField(max_length=64), max_length=10_000)


class CommitInputSerializer(TokenSerializer):
    parent = serializers.IntegerField(min_value=0)
    message = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)
    manifest = serializers.DictField(help_text="The manifest document: {format, generation, entries: [...]}")


class LogSerializer(serializers.Serializer):
    text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=1_000_000)


def _one_of(value: str, allowed) -> str:
    if value not in allowed:
        raise serializers.ValidationError(f"must be one of {', '.join(allowed)}")
    return value


# Plain strings checked by hand (not ChoiceFields), so the schema has one Status enum: the job's.
class StatusSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="waiting or running")

    def validate_status(self, value: str) -> str:
        return _one_of(value, [Job.Status.WAITING, Job.Status.RUNNING])


class ScriptEventSerializer(serializers.Serializer):
    event = serializers.ChoiceField(choices=["started", "finished"])


class FiguresSerializer(serializers.Serializer):
    figures = serializers.DictField(child=serializers.IntegerField(allow_null=True))


class FinishSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="success, failure or cancelled")
    result = serializers.JSONField(required=False, allow_null=True, default=None)
    error = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)

    def validate_status(self, value: str) -> str:
        return _one_of(value, list(Job.FINISHED))
