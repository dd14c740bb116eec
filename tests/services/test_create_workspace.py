"""`create_workspace` is idempotent: it changes storage only when asked, checks it, and never strands volumes."""
from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from tests.servers import backend_config
from volumes.models import ObjectStorage, Workspace

pytestmark = pytest.mark.django_db


def s3_url(config: dict) -> str:
    return (f"s3://{config['bucket']}?endpoint_url={config['endpoint_url']}&region={config['region']}"
            f"&access_key={config['access_key']}&secret_key={config['secret_key']}")


def test_adding_a_member_keeps_the_storage(request, tmp_path):
    config = backend_config("s3", request, tmp_path)
    call_command("create_workspace", "lab", "--admin", "ada", "--storage", s3_url(config))
    call_command("create_workspace", "lab", "--member", "bob")
    [storage] = ObjectStorage.objects.filter(workspace_id="lab")
    assert storage.kind == "s3" and storage.config["bucket"] == config["bucket"]
    assert Workspace.objects.get(pk="lab").volume_storage_id == storage.pk


def test_a_new_workspace_without_storage_gets_the_default_folder(tmp_path):
    call_command("create_workspace", "fresh")
    [storage] = ObjectStorage.objects.filter(workspace_id="fresh")
    assert storage.kind == "filesystem"


def test_it_refuses_a_new_bucket_while_volumes_live_in_the_old_one(request, tmp_path):
    from volumes.services.volumes import volume_create
    from volumes.services.workspaces import user_ensure

    first, second = backend_config("s3", request, tmp_path), backend_config("s3", request, tmp_path)
    call_command("create_workspace", "lab", "--admin", "ada", "--storage", s3_url(first))
    volume_create(Workspace.objects.get(pk="lab"), "data", owner=user_ensure("ada"))
    with pytest.raises(CommandError, match="holds 1 volume.*cannot change.*move or delete the volumes first"):
        call_command("create_workspace", "lab", "--storage", s3_url(second))
    with pytest.raises(CommandError, match="cannot change"):
        call_command("create_workspace", "lab", "--storage", f"file://{tmp_path}/elsewhere")
    with pytest.raises(CommandError, match="cannot change"):
        call_command("create_workspace", "lab", "--storage", s3_url(first).replace("?", "/other-prefix?"))
    assert ObjectStorage.objects.get(workspace_id="lab").config["bucket"] == first["bucket"]
    rotated = s3_url(first).replace("secret_key=testing", "secret_key=rotated")  # moto takes any key
    call_command("create_workspace", "lab", "--storage", rotated)
    assert ObjectStorage.objects.get(workspace_id="lab").config["secret_key"] == "rotated"


def test_every_storage_url_is_checked_before_it_is_saved(request, tmp_path, settings):
    missing = backend_config("s3", request, tmp_path, create=False)
    with pytest.raises(CommandError, match=f"bucket '{missing['bucket']}' does not exist"):
        call_command("create_workspace", "lab", "--storage", s3_url(missing))
    assert not ObjectStorage.objects.filter(workspace_id="lab").exists()
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_ALLOWED_HOSTS": []}
    present = backend_config("s3", request, tmp_path)
    with pytest.raises(CommandError, match="loopback or link-local"):
        call_command("create_workspace", "lab", "--storage", s3_url(present))
