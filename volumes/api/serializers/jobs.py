"""Jobs: submitting, reading and paging through the log."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ...models import Job, JobVolume
from .fields import StrictCharField, StrictIntegerField


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 1_000_000, "pattern": "^[^\\u0000]*$"})
class NoNulTextField(StrictCharField):
    """Text without NUL characters (PostgreSQL cannot store them)."""


class JobCreateSerializer(serializers.Serializer):
    language = serializers.ChoiceField(choices=Job.Language.choices)
    content = NoNulTextField(min_length=1, max_length=1_000_000, trim_whitespace=False)
    args = serializers.DictField(
        required=False, default=dict,
        help_text="The script's arguments (a JSON object). NUL characters in its strings become U+FFFD "
                  "(the database cannot store them).")

    def validate_content(self, value: str) -> str:
        if "\x00" in value:
            raise serializers.ValidationError("the script contains a NUL character")
        return value

    def validate_args(self, value: dict) -> dict:
        return _without_nul(value)


def _without_nul(value):
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


class JobMountSerializer(serializers.ModelSerializer):
    volume = StrictCharField(source="volume_name")

    class Meta:
        model = JobVolume
        fields = [
            "volume", "mount_path", "mode", "lease_token", "base_generation", "committed_generation",
            "files_pulled", "bytes_pulled", "files_skipped", "files_pushed", "bytes_pushed", "files_deleted",
        ]


class JobSerializer(serializers.ModelSerializer):
    user = StrictCharField(source="user.username")
    mounts = JobMountSerializer(many=True, read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "status", "language", "user", "args", "worker", "cancel_requested", "created_at", "started_at",
            "script_started_at", "script_finished_at", "finished_at", "result", "error", "mounts",
        ]


class JobDetailSerializer(JobSerializer):
    log = serializers.SerializerMethodField(
        help_text="The kept log: its head and tail within VOLUMES_JOB_LOG_MAX_BYTES, with a note where bytes were cut")
    log_bytes = serializers.SerializerMethodField(help_text="Bytes the job logged, including what was cut")

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["content", "log", "log_bytes"]

    def get_log(self, job) -> str:
        return job.log

    def get_log_bytes(self, job) -> int:
        from ...selectors import job_log_total

        return job_log_total(job.pk)


class JobLogPageSerializer(serializers.Serializer):
    text = StrictCharField()
    offset = StrictIntegerField()
    next_offset = StrictIntegerField(allow_null=True, help_text="Ask for this offset next; null at the end")
    total_bytes = StrictIntegerField()
    cut_bytes = StrictIntegerField()
