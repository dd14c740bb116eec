"""The engine endpoints for agent workers: claim, leases and pins, blobs, commits, log and outcome."""
from __future__ import annotations

from django.core.validators import RegexValidator
from rest_framework import serializers

from ...models import Job
from .fields import StrictBooleanField, StrictCharField, StrictFloatField, StrictIntegerField

# Text without NUL characters (PostgreSQL cannot store them); drf-spectacular turns it into the schema's pattern.
NO_NUL = RegexValidator(r"^[^\x00]*$", message="must not contain a NUL character")


WholeNumberField = StrictIntegerField


class ClaimSerializer(serializers.Serializer):
    worker = StrictCharField(min_length=1, max_length=150, required=False, default="agent",
                                   trim_whitespace=False, validators=[NO_NUL])
    # What the agent says about itself, for the Workers page (all optional; cache figures once measured).
    version = StrictCharField(min_length=1, max_length=50, required=False, default="",
                                    trim_whitespace=False, validators=[NO_NUL])
    cache_bytes = WholeNumberField(min_value=0, max_value=2**63 - 1, required=False, default=None)
    cache_max_bytes = WholeNumberField(min_value=0, max_value=2**63 - 1, required=False, default=None)


class MountPlanSerializer(serializers.Serializer):
    name = StrictCharField()
    mount_path = StrictCharField()
    read_only = StrictBooleanField()
    line = StrictIntegerField()
    max_size = StrictIntegerField(allow_null=True)


class JobSpecSerializer(serializers.Serializer):
    id = StrictIntegerField()
    workspace_id = StrictCharField()
    user = StrictCharField()
    language = StrictCharField()
    content = StrictCharField()
    args = serializers.DictField()
    sandbox = StrictBooleanField()
    mounts = MountPlanSerializer(many=True)
    job_key = StrictCharField(help_text="Send as the X-Job-Key header with every request about this job")
    settings = serializers.DictField(help_text="Server settings the agent runs the job with (TTL, limits)")


class AcquireSerializer(serializers.Serializer):
    holder = StrictCharField(max_length=200)
    wait = StrictFloatField(required=False, min_value=0, help_text="Seconds to wait in this request (<= 25)")


class LeaseSerializer(serializers.Serializer):
    volume_id = StrictIntegerField()
    workspace_id = StrictCharField()
    volume_name = StrictCharField()
    token = StrictIntegerField()
    holder = StrictCharField()
    generation = StrictIntegerField()
    manifest_key = StrictCharField(allow_blank=True)
    ttl = StrictFloatField()


class TokenSerializer(serializers.Serializer):
    token = StrictIntegerField()


class PinInputSerializer(serializers.Serializer):
    holder = StrictCharField(max_length=200)


class PinSerializer(LeaseSerializer):
    pin_id = StrictIntegerField(help_text="Names the pin in renew, release, manifest and blob requests")


class PinIdSerializer(serializers.Serializer):
    pin = StrictIntegerField(min_value=1)


class MissingSerializer(TokenSerializer):
    hashes = serializers.ListField(child=StrictCharField(max_length=64), max_length=10_000)
    stored = StrictIntegerField(required=False, min_value=0,
                                help_text="How many blobs the volume's base generation holds, when the agent knows: "
                                          "the server may then list a small volume's blobs instead of looking each up")
    direct = serializers.BooleanField(required=False, default=False,
                                      help_text="Also answer presigned uploads for the missing blobs, where the storage signs")


class PresignedSerializer(serializers.Serializer):
    """A request anyone may make for a few minutes without credentials: send exactly these headers."""

    method = serializers.CharField()
    url = serializers.CharField()
    headers = serializers.DictField(child=serializers.CharField())


class BlobUrlsSerializer(serializers.Serializer):
    token = StrictIntegerField(required=False, help_text="The lease's fencing token (or give pin)")
    pin = StrictIntegerField(required=False, min_value=1, help_text="The pin's id, for a read-only mount")
    hashes = serializers.ListField(child=StrictCharField(max_length=64), max_length=10_000)


class ManifestPartsSerializer(serializers.Serializer):
    token = StrictIntegerField(required=False, help_text="The lease's fencing token (or give pin)")
    pin = StrictIntegerField(required=False, min_value=1, help_text="The pin's id, for a read-only mount")
    generation = StrictIntegerField(min_value=1, help_text="The generation the lease or pin was taken at")
    digests = serializers.ListField(child=StrictCharField(max_length=64), min_length=1, max_length=1000,
                                    help_text="Parts of that generation's stored manifest, as its document names them")


class CommitInputSerializer(TokenSerializer):
    parent = StrictIntegerField(min_value=0)
    message = StrictCharField(required=False, allow_blank=True, default="", max_length=300)
    manifest = serializers.DictField(help_text="The manifest document: {format, generation, entries: [...]}")


class CommitVolumeSerializer(CommitInputSerializer):
    name = StrictCharField(max_length=200)


class CommitBatchSerializer(serializers.Serializer):
    volumes = serializers.ListField(child=CommitVolumeSerializer(), min_length=1, max_length=100)


class LogSerializer(serializers.Serializer):
    text = StrictCharField(allow_blank=True, trim_whitespace=False, max_length=1_000_000)


def _one_of(value: str, allowed) -> str:
    if value not in allowed:
        raise serializers.ValidationError(f"must be one of {', '.join(allowed)}")
    return value


# Plain strings checked by hand (not ChoiceFields), so the schema has one Status enum: the job's.
class StatusSerializer(serializers.Serializer):
    status = StrictCharField(help_text="waiting or running")

    def validate_status(self, value: str) -> str:
        return _one_of(value, [Job.Status.WAITING, Job.Status.RUNNING])


class ScriptEventSerializer(serializers.Serializer):
    event = serializers.ChoiceField(choices=["started", "finished"])


class FiguresSerializer(serializers.Serializer):
    figures = serializers.DictField(child=StrictIntegerField(allow_null=True))


class FinishSerializer(serializers.Serializer):
    status = StrictCharField(help_text="success, failure or cancelled")
    result = serializers.JSONField(required=False, allow_null=True, default=None)
    error = StrictCharField(required=False, allow_blank=True, default="", trim_whitespace=False)

    def validate_status(self, value: str) -> str:
        return _one_of(value, list(Job.FINISHED))
