"""Fields that take JSON's types as the schema states them."""
from __future__ import annotations

from rest_framework import serializers


class _Strict:
    """JSON types as the schema states them: in a JSON body, 5 is not a string and "5" is not a number (DRF
    would coerce both). Form bodies (all text) keep DRF's conversions."""

    json_types: tuple = ()

    def to_internal_value(self, data):
        if self.context.get("json") and not isinstance(data, self.json_types):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(_Strict, serializers.CharField):
    json_types = (str,)


class StrictIntegerField(_Strict, serializers.IntegerField):
    """Also bounded to what the database stores (64 bits), so an enormous number is a 400, never a 500."""

    json_types = (int, float)

    def __init__(self, **kwargs):
        kwargs.setdefault("max_value", 2**63 - 1)
        kwargs.setdefault("min_value", -(2**63))
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        """An integer as JSON Schema counts them: 1e18 and 5.0 are whole numbers too (DRF refuses 1e+18)."""
        if isinstance(data, bool) or (isinstance(data, float) and not data.is_integer()):
            self.fail("invalid")
        if isinstance(data, float):
            data = int(data)
        return super().to_internal_value(data)


class StrictBooleanField(_Strict, serializers.BooleanField):
    json_types = (bool,)


class StrictFloatField(_Strict, serializers.FloatField):
    json_types = (int, float)

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)
