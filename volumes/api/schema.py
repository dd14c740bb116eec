"""OpenAPI generation: readable tags for the public API, listed before the agent workers' endpoints."""
from __future__ import annotations

from drf_spectacular.openapi import AutoSchema

class VolumesAutoSchema(AutoSchema):
    def get_tags(self) -> list[str]:
        """The explicit tags of a view, else one named after what the path works on (never "w"); the order of
        the tags in the docs is SPECTACULAR_SETTINGS["TAGS"]."""
        tags = super().get_tags()
        if tags and tags != ["w"] and tags != ["api"]:
            return tags
        parts = [p for p in self.path.strip("/").split("/") if p]
        if "agent" in parts:
            return ["agent"]
        for segment, tag in (("files", "files"), ("folders", "files"), ("move", "files"), ("shares", "shares"),
                             ("history", "history"), ("jobs", "jobs"), ("storages", "storages"),
                             ("volumes", "volumes")):
            if segment in parts:
                return [tag]
        return ["workspaces"]


def require_json_bodies(result, generator, request, public):
    """drf-spectacular postprocessing hook: a request body whose schema names required properties is itself
    required (raw oneOf schemas, such as the storage and share bodies, do not say so on their own)."""
    components = result.get("components", {}).get("schemas", {})

    def needs(schema: dict) -> bool:
        if "$ref" in schema:
            schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
        if schema.get("required"):
            return True
        branches = schema.get("oneOf") or schema.get("anyOf") or []
        return bool(branches) and all(needs(b) for b in branches)

    for item in result.get("paths", {}).values():
        for operation in item.values():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body and any(needs(c.get("schema", {})) for c in body.get("content", {}).values()):
                body["required"] = True
            for content in (body or {}).get("content", {}).values():
                _no_nul(content.get("schema", {}))
    for schema in components.values():
        _no_nul(schema)
    return result


NO_NUL_PATTERN = "^[^\\u0000]*$"


def _no_nul(schema) -> None:
    """Every text field refuses NUL (DRF's CharField; PostgreSQL cannot store it): say so where nothing narrower
    is said already."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not ({"pattern", "enum", "format"} & set(schema)):
        schema["pattern"] = NO_NUL_PATTERN
    for key in ("properties",):
        for sub in (schema.get(key) or {}).values():
            _no_nul(sub)
    for key in ("items", "additionalProperties"):
        _no_nul(schema.get(key))
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(key) or []:
            _no_nul(sub)
