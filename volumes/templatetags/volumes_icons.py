"""`{% icon "name" "class" %}`: the SVG of `volumes/_icon.html`, rendered once per (name, class).

The same output as `{% include "volumes/_icon.html" with name=... cls=... %}`, for tables that show
an icon in every row (the file browser renders up to 200 rows, five icons each)."""
from functools import lru_cache

from django import template
from django.template.loader import get_template
from django.utils.safestring import mark_safe

register = template.Library()


@lru_cache(maxsize=128)
def _render(name: str, cls: str) -> str:
    return get_template("volumes/_icon.html").render({"name": name, "cls": cls})


@register.simple_tag
def icon(name: str, cls: str = "") -> str:
    return mark_safe(_render(name, cls))
