"""Storages of a workspace (admins)."""
from __future__ import annotations

from rest_framework import serializers

from .fields import StrictBooleanField, StrictCharField, StrictIntegerField


class StorageSerializer(serializers.Serializer):
    """A storage as admins see it: where it is, never its credentials."""

    id = StrictIntegerField(source="pk")
    name = StrictCharField()
    kind = StrictCharField()
    location = StrictCharField(help_text="e.g. 's3://bucket/prefix at https://minio:9000'; no secrets")
    is_primary = StrictBooleanField()
    is_volume_storage = StrictBooleanField()
    volume_count = StrictIntegerField()


class StorageWriteSerializer(serializers.Serializer):
    """Either `url` (a storage URL, as for create_workspace) or `kind` and `config` (every setting)."""

    name = StrictCharField(max_length=100)
    url = StrictCharField(required=False, max_length=8192,
                                help_text="file:///abs/path, s3://bucket/prefix?endpoint_url=...&access_key=...&"
                                          "secret_key=..., az://container/prefix?connection_string=..., "
                                          "gs://bucket/prefix?endpoint=...")
    kind = serializers.ChoiceField(choices=["filesystem", "s3", "azure", "gcs"], required=False)
    config = serializers.DictField(child=StrictCharField(allow_blank=True, max_length=65536), required=False)
    is_primary = StrictBooleanField(default=False)
    volume_storage = StrictBooleanField(default=False, help_text="select it as the workspace's volume storage")

    def validate(self, data):
        if "url" in data and ("kind" in data or "config" in data):
            raise serializers.ValidationError("give either url, or kind and config, not both")
        if ("kind" in data) != ("config" in data):
            raise serializers.ValidationError("give kind and config together")
        return data


class StorageUpdateSerializer(StorageWriteSerializer):
    name = StrictCharField(max_length=100, required=False)
    is_primary = StrictBooleanField(required=False)
    volume_storage = StrictBooleanField(required=False)


class StorageTestSerializer(serializers.Serializer):
    url = StrictCharField(required=False, max_length=8192)
    kind = serializers.ChoiceField(choices=["filesystem", "s3", "azure", "gcs"], required=False)
    config = serializers.DictField(child=StrictCharField(allow_blank=True, max_length=65536), required=False)

    def validate(self, data):
        if "url" not in data and not ("kind" in data and "config" in data):
            raise serializers.ValidationError("give url, or kind and config")
        return data
