"""Charts: a volume's size and file count over its generations on History, and storage per volume
on the volumes page, drawn as inline SVG with a text summary for screen readers."""
import io
import re

import pytest

from volumes.services import files
from volumes.services.volumes import volume_create

from .conftest import url

pytestmark = pytest.mark.django_db


def test_history_draws_size_and_files_over_generations(as_user, workspace, volume):
    for i in range(3):
        files.file_put(volume, f"f{i}.bin", io.BytesIO(b"x" * 1000 * (i + 1)))
    page = as_user("member").get(url(workspace, volume, "history/")).content.decode()
    assert page.count('<svg viewBox') == 2 and 'class="chart-line"' in page
    assert re.search(r"aria-label=\"Size over generations: 1000.bytes at generation 1, 5.9.KB at generation 3", page)
    assert "3 files at generation 3" in page and "<title>generation 2: 2 files</title>" in page


def test_volumes_page_draws_storage_per_volume_for_what_the_user_sees(as_user, workspace, cast):
    from volumes import permissions

    big = volume_create(workspace, "big-one", owner=cast["owner"])
    files.file_put(big, "a.bin", io.BytesIO(b"x" * 50_000))
    secret = volume_create(workspace, "secret", owner=cast["owner"])
    files.file_put(secret, "s.bin", io.BytesIO(b"x" * 10_000))
    permissions.set_share(secret, cast["owner"], "write")  # shared: no longer open to all members
    member = as_user("member").get(url(workspace, rest="assets/volumes/")).content.decode()
    assert "Storage per volume" in member and re.search(r"<title>big-one: 48.8.KB</title>", member)
    assert "secret" not in member
    admin = as_user("admin").get(url(workspace, rest="assets/volumes/")).content.decode()
    assert re.search(r"<title>secret: 9.8.KB</title>", admin)
