"""Files and folders of a volume, and what a change committed."""
from __future__ import annotations

from datetime import datetime, timezone

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ...engine.manifest import DIR, FILE, LINK
from .fields import StrictCharField, StrictIntegerField


class EntrySerializer(serializers.Serializer):
    """One file, folder or symlink of a volume generation."""

    name = serializers.SerializerMethodField()
    path = StrictCharField()
    type = serializers.ChoiceField(choices=[FILE, DIR, LINK])
    size = StrictIntegerField()
    hash = StrictCharField(help_text="SHA-256 of the contents (files only)")
    mode = StrictIntegerField()
    modified_at = serializers.SerializerMethodField()
    target = StrictCharField(help_text="The link's target text (links only); never followed")
    generation = StrictIntegerField(source="gen", help_text="The generation that last changed it")

    def get_name(self, entry) -> str:
        return entry.path.rpartition("/")[2]

    def get_modified_at(self, entry) -> datetime | None:
        if not entry.mtime_ns:
            return None
        return datetime.fromtimestamp(entry.mtime_ns / 1e9, tz=timezone.utc)


class FolderSerializer(serializers.Serializer):
    path = StrictCharField()
    generation = StrictIntegerField()
    count = StrictIntegerField(help_text="Entries in the folder (all pages)")
    entries = EntrySerializer(many=True)


class ChangeSerializer(serializers.Serializer):
    """The outcome of a file operation: the generation it committed."""

    generation = StrictIntegerField()
    path = StrictCharField(required=False)


# A path inside a volume as the services accept it (README, "Paths from users"): relative, no '.' or '..'
# segment, no empty segment, no backslash, NUL or control character. The byte limits (255 per name, 4,096 in
# all, in UTF-8) cannot be said in a schema; the length here is in characters.
VOLUME_PATH_PATTERN = r"^(?!/)(?!.*/$)(?!.*//)(?!(.*/)?\.\.?(/|$))[^\x00-\x1f\x7f-\x9f\\]+$"
FOLDER_PATH_PATTERN = VOLUME_PATH_PATTERN.replace("(?!.*/$)", "")


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 4096, "pattern": VOLUME_PATH_PATTERN,
                      "example": "reports/2024.csv"})
class VolumePathField(StrictCharField):
    """Checked by the services (with a message that says what is wrong); the schema states the same rule."""


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 4096, "pattern": FOLDER_PATH_PATTERN,
                      "example": "reports/2024"})
class FolderPathField(StrictCharField):
    """A new folder's path: a volume path that may end with one '/'."""


class FolderCreateSerializer(serializers.Serializer):
    path = FolderPathField(max_length=8192, trim_whitespace=False)


class MoveSerializer(serializers.Serializer):
    src = VolumePathField(max_length=8192, trim_whitespace=False)
    dst = VolumePathField(max_length=8192, trim_whitespace=False)
