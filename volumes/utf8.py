"""Cutting UTF-8 bytes at character boundaries (job logs keep a head and a tail of whole characters)."""
from __future__ import annotations


def char_start(data: bytes, i: int) -> int:
    """The first index >= i that starts a UTF-8 character (continuation bytes are 0b10xxxxxx)."""
    while i < len(data) and data[i] & 0xC0 == 0x80:
        i += 1
    return i


def char_end(data: bytes, i: int) -> int:
    """The last index <= i at which a UTF-8 character starts (so data[:i] is whole characters)."""
    while 0 < i < len(data) and data[i] & 0xC0 == 0x80:
        i -= 1
    return i
