"""A volume's own size cap (quota): set and cleared by owners and admins, enforced on every commit path with
the workspace's per-volume cap (the smaller wins), and shown as the number that is enforced."""
from __future__ import annotations

import io

import pytest

from tests.engine.helpers import commit
from volumes import selectors
from volumes.exceptions import InvalidSize, LimitExceeded
from volumes.models import Volume
from volumes.services import files
from volumes.services.volumes import parse_size, volume_set_quota

pytestmark = pytest.mark.django_db(transaction=True)
KiB = 1024


@pytest.mark.parametrize("text, size", [
    ("10 GB", 10 * 10**9), ("10GB", 10 * 10**9), ("1.5 GiB", 3 * 2**29), ("500 mb", 500 * 10**6),
    ("2 KiB", 2048), ("123", 123), ("0", 0), ("7 B", 7), (" 1 tb ", 10**12), ("1,000,000", 10**6),
    ("none", None), ("", None), ("No limit", None),
])
def test_sizes_are_read_in_human_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text, why", [
    ("-1", "0 or more"), ("-5 GB", "0 or more"), ("ten", "like"), ("10 GX", "like"), ("1e99 TB", "too large"),
    ("0.5 B", "whole number of bytes"),
])
def test_a_bad_size_says_what_is_accepted(text, why):
    with pytest.raises(InvalidSize, match=why):
        parse_size(text)


def test_the_volume_cap_is_set_and_cleared(volume):
    volume_set_quota(volume, 5 * KiB)
    assert Volume.objects.get(pk=volume.pk).max_size_bytes == 5 * KiB
    volume_set_quota(volume, None)
    assert Volume.objects.get(pk=volume.pk).max_size_bytes is None
    with pytest.raises(InvalidSize, match="0 or more"):
        volume_set_quota(volume, -1)


def test_the_smaller_of_the_volume_and_workspace_caps_is_enforced_and_the_error_says_how_to_raise_it(
        volume, workspace, tmp_path):
    volume_set_quota(volume, 10 * KiB)
    workspace.max_volume_size = 100 * KiB
    workspace.save(update_fields=["max_volume_size"])
    with pytest.raises(LimitExceeded) as refused:  # a job's push
        commit(volume, tmp_path / "c", lambda tree: (tree / "big").write_bytes(b"x" * 20 * KiB))
    message = str(refused.value)
    assert "over its limit of 10,240 bytes" in message
    assert "volume quota training-data" in message and "owner or an admin" in message
    with pytest.raises(LimitExceeded, match="volume quota training-data"):  # the file API
        files.file_put(Volume.objects.get(pk=volume.pk), "big", io.BytesIO(b"x" * 20 * KiB))
    commit(volume, tmp_path / "c", lambda tree: (tree / "small").write_bytes(b"x" * 5 * KiB))
    # The workspace's cap is smaller now: raising it is an admin's, under the workspace's settings.
    workspace.max_volume_size = 6 * KiB
    workspace.save(update_fields=["max_volume_size"])
    with pytest.raises(LimitExceeded, match="workspace") as refused:
        commit(volume, tmp_path / "c", lambda tree: (tree / "more").write_bytes(b"y" * 3 * KiB))
    assert "6,144 bytes" in str(refused.value)


def test_a_cap_below_the_current_size_is_allowed_and_the_usage_shows_it_over(volume, tmp_path):
    commit(volume, tmp_path / "c", lambda tree: (tree / "a").write_bytes(b"a" * 8 * KiB))
    volume = Volume.objects.get(pk=volume.pk)
    assert selectors.volume_usage(volume) is None  # no cap: nothing to show
    volume_set_quota(volume, 10 * KiB)
    usage = selectors.volume_usage(Volume.objects.get(pk=volume.pk))
    assert (usage.stored_bytes, usage.cap_bytes, usage.percent, usage.level) == (8 * KiB, 10 * KiB, 80, "warning")
    # History counts: an overwritten file's old version is still stored while its generation is kept.
    commit(volume, tmp_path / "c", lambda tree: (tree / "a").write_bytes(b"b" * 2 * KiB))
    usage = selectors.volume_usage(Volume.objects.get(pk=volume.pk))
    assert (usage.stored_bytes, usage.percent, usage.level) == (10 * KiB, 100, "error")
    volume_set_quota(volume, KiB)  # below what it stores: allowed, the next growing commit is refused
    usage = selectors.volume_usage(Volume.objects.get(pk=volume.pk))
    assert (usage.percent, usage.level, usage.bar_percent) == (1000, "error", 100)
    volume_set_quota(volume, 100 * KiB)
    assert selectors.volume_usage(Volume.objects.get(pk=volume.pk)).level == ""
