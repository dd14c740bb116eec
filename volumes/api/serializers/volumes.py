"""Volumes and the trash."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .fields import StrictBooleanField, StrictCharField, StrictIntegerField


class AccessSerializer(serializers.Serializer):
    level = StrictCharField(allow_null=True, help_text="write, read or null")
    can_write = StrictBooleanField()
    can_delete = StrictBooleanField()
    can_share = StrictBooleanField()
    is_admin = StrictBooleanField()
    is_owner = StrictBooleanField()


class LeaseInfoSerializer(serializers.Serializer):
    holder = StrictCharField()
    job = StrictIntegerField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class UsageSerializer(serializers.Serializer):
    """What a capped volume stores (its kept history included) against the cap enforced on it."""

    stored_bytes = StrictIntegerField()
    cap_bytes = StrictIntegerField(help_text="The smaller of the volume's own cap and the workspace's")
    percent = StrictIntegerField(help_text="May pass 100: a cap can be set below what the volume stores")
    level = serializers.ChoiceField(["", "warning", "error"], help_text="warning from 80 %, error from 100 %")


class VolumeSerializer(serializers.Serializer):
    """One volume as its caller sees it (`VolumeRow` of the selectors)."""

    name = StrictCharField(source="volume.name")
    owner = StrictCharField(source="volume.owner.username", allow_null=True, default=None)
    size_bytes = StrictIntegerField(source="volume.size_bytes")
    file_count = StrictIntegerField(source="volume.file_count")
    generation = StrictIntegerField(source="volume.generation")
    created_at = serializers.DateTimeField(source="volume.created_at")
    last_used_at = serializers.DateTimeField(source="volume.last_used_at", allow_null=True)
    last_used_job = StrictIntegerField(source="volume.last_used_job_id", allow_null=True,
                                             help_text="The last job that mounted the volume (read or write).")
    leased = StrictBooleanField()
    lease = serializers.SerializerMethodField()
    access = AccessSerializer()
    max_size_bytes = StrictIntegerField(source="volume.max_size_bytes", allow_null=True,
                                        help_text="The volume's own cap (null: none); the workspace's applies too")
    usage = UsageSerializer(allow_null=True, help_text="null when no cap applies")

    def get_lease(self, row) -> LeaseInfoSerializer(allow_null=True):  # type: ignore[valid-type]
        if not row.leased:
            return None
        v = row.volume
        return {"holder": v.lease_holder, "job": v.lease_job_id, "since": v.lease_acquired_at,
                "expires_at": v.lease_expires_at}


# What the annotations and the services accept as a volume name (README, "Annotation rules").
VOLUME_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]$"


@extend_schema_field({"type": "string", "minLength": 2, "maxLength": 255, "pattern": VOLUME_NAME_PATTERN,
                      "example": "training-data"})
class VolumeNameField(StrictCharField):
    """Checked by the service (with a message that says what is wrong); the schema states the same rule."""


class VolumeCreateSerializer(serializers.Serializer):
    name = VolumeNameField(max_length=255)


class DuplicateSerializer(serializers.Serializer):
    name = VolumeNameField(max_length=255, help_text="The new volume's name")
    generation = StrictIntegerField(required=False, min_value=1,
                                    help_text="The source generation to copy (default: its current one)")


class QuotaSerializer(serializers.Serializer):
    max_size_bytes = StrictIntegerField(allow_null=True, min_value=0,
                                        help_text="Cap on the volume's storage, its kept history included; "
                                                  "null: no cap of its own")


class TrashedVolumeSerializer(serializers.Serializer):
    """A volume in the workspace's trash: restorable until `purge_at`, when GC removes its objects."""

    name = serializers.CharField()
    owner = serializers.CharField(source="owner.username", allow_null=True, default=None)
    size_bytes = serializers.IntegerField()
    file_count = serializers.IntegerField()
    generation = serializers.IntegerField()
    deleted_at = serializers.DateTimeField(source="trashed_at")
    deleted_by = serializers.CharField(source="trashed_by.username", allow_null=True, default=None)
    purge_at = serializers.DateTimeField()
