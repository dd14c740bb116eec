"""Who a volume is shared with."""
from __future__ import annotations

from rest_framework import serializers

from .fields import StrictCharField

ACCESS_LEVELS = ("read", "write")


class ShareSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["user", "group"])
    name = StrictCharField()
    access = serializers.ChoiceField(choices=ACCESS_LEVELS)


class _PrincipalSerializer(serializers.Serializer):
    user = StrictCharField(required=False, max_length=150)
    group = StrictCharField(required=False, max_length=150)

    def validate(self, attrs):
        if bool(attrs.get("user")) == bool(attrs.get("group")):
            raise serializers.ValidationError("give exactly one of `user` or `group`")
        return attrs


class ShareGrantSerializer(_PrincipalSerializer):
    access = serializers.ChoiceField(choices=ACCESS_LEVELS)


class ShareRevokeSerializer(_PrincipalSerializer):
    pass


def principal_schema(extra: dict, required: list[str]) -> dict:
    """A user or a group, never both: the request schema of granting and revoking shares."""
    name = {"type": "string", "minLength": 1, "maxLength": 150, "pattern": r"^[^\u0000]*\S[^\u0000]*$"}
    return {"oneOf": [
        {"type": "object", "title": f"to a {kind}", "properties": {kind: name, **extra},
         "required": [kind, *required], "additionalProperties": False}
        for kind in ("user", "group")
    ]}


SHARE_GRANT = principal_schema({"access": {"type": "string", "enum": list(ACCESS_LEVELS)}}, ["access"])
SHARE_REVOKE = principal_schema({}, [])
