"""`{% volume_usage volume as usage %}`: what a volume stores against its enforced cap (None without one),
for the volume header every volume page includes."""
from django import template

from ..selectors import Usage, volume_usage as _volume_usage

register = template.Library()


@register.simple_tag
def volume_usage(volume) -> Usage | None:
    return _volume_usage(volume)
