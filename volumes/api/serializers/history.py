"""A volume's generations, pruning and health."""
from __future__ import annotations

from rest_framework import serializers

from ...models import VolumeCommit
from .fields import StrictBooleanField, StrictCharField, StrictIntegerField


class CommitSerializer(serializers.ModelSerializer):
    user = StrictCharField(source="user.username", allow_null=True, default=None)
    job = StrictIntegerField(source="job_id", allow_null=True)

    class Meta:
        model = VolumeCommit
        fields = [
            "generation", "parent", "created_at", "user", "job", "message", "files_added", "files_changed",
            "files_deleted", "bytes_added", "bytes_changed", "bytes_deleted", "size_bytes", "file_count",
        ]


class PruneSerializer(serializers.Serializer):
    keep = StrictIntegerField(min_value=1, default=1, help_text="Generations to keep, newest first")


class ProblemSerializer(serializers.Serializer):
    path = StrictCharField(allow_blank=True)
    what = serializers.ChoiceField(["entry", "missing", "size", "hash", "manifest"])
    detail = StrictCharField()


class HealthSerializer(serializers.Serializer):
    volume = StrictCharField()
    generation = StrictIntegerField()
    ok = StrictBooleanField()
    entries = StrictIntegerField()
    files_checked = StrictIntegerField()
    hashes_checked = StrictBooleanField()
    problems = ProblemSerializer(many=True)
    repaired_generation = StrictIntegerField(allow_null=True, required=False,
                                                   help_text="The generation the repair committed (null: none)")


class PrunedSerializer(serializers.Serializer):
    pruned = StrictIntegerField(help_text="Generations dropped from history")
