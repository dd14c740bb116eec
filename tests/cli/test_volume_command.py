"""`manage.py volume` on the server (--user) and against a live server (--server/--token)."""
import io
import json

import pytest
from django.core.management import CommandError, call_command

from volumes.models import Volume

from ..api.helpers import seed


def volume_cmd(*args) -> str:
    out = io.StringIO()
    call_command("volume", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def local_tree(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    return src


def roundtrip(run, tmp_path, local_tree):
    assert "uploaded 1 file" in run("put", "training-data", str(local_tree / "a.txt"), "docs/")
    assert "uploaded 2 files to training-data (generation 2)" in run("put", "training-data", str(local_tree), "tree")
    listing = run("ls", "training-data:tree")
    assert "sub/" in listing and "a.txt" in listing
    rows = json.loads(run("--json", "ls", "training-data"))
    assert [r["name"] for r in rows] == ["docs", "tree"]
    assert json.loads(run("--json", "ls"))[0]["file_count"] == 3
    dest = tmp_path / "out"
    run("get", "training-data", "tree", str(dest))
    assert (dest / "sub" / "b.bin").read_bytes() == (local_tree / "sub" / "b.bin").read_bytes()
    run("get", "training-data", "docs/a.txt", str(tmp_path / "single.txt"))
    assert (tmp_path / "single.txt").read_bytes() == b"alpha"
    assert "deleted docs" in run("rm", "training-data", "docs")
    history = run("--json", "history", "training-data")
    assert [h["generation"] for h in json.loads(history)] == [3, 2, 1]  # a folder is one generation
    assert "restored generation 2 of training-data as generation 4" in run("restore", "training-data", "2")
    assert "docs/" in run("ls", "training-data")
    assert "dropped 2 generations from the history of training-data" in run("prune", "training-data", "--keep", "2")
    assert [h["generation"] for h in json.loads(run("--json", "history", "training-data"))] == [4, 3]
    with pytest.raises(CommandError, match="--yes"):
        run("rm", "training-data")
    assert "deleted volume" in run("rm", "training-data", "--yes")
    assert not Volume.objects.filter(name="training-data").exists()
    assert [r["name"] for r in json.loads(run("--json", "trash"))] == ["training-data"]
    assert "restored volume training-data" in run("trash", "restore", "training-data")
    assert "docs/" in run("ls", "training-data") and json.loads(run("--json", "trash")) == []
    run("rm", "training-data", "--yes")
    assert "for good" in run("trash", "purge", "training-data")
    assert not Volume.all_objects.filter(name="training-data").exists()


@pytest.mark.django_db
def test_the_cli_on_the_server_acts_as_a_user(volume, tmp_path, local_tree):
    roundtrip(lambda *a: volume_cmd("-w", "acme", "-u", "owner", *a), tmp_path, local_tree)


@pytest.mark.django_db
def test_the_cli_checks_permissions_and_paths_like_the_api(volume, cast, tmp_path, local_tree):
    from volumes.permissions import set_share

    set_share(volume, cast["reader"], "read")
    with pytest.raises(CommandError, match="read-only access"):
        volume_cmd("-w", "acme", "-u", "reader", "put", "training-data", str(local_tree / "a.txt"))
    with pytest.raises(CommandError, match="no share"):
        volume_cmd("-w", "acme", "-u", "member", "ls", "training-data")
    with pytest.raises(CommandError, match="not found"):
        volume_cmd("-w", "acme", "-u", "outsider", "ls")
    with pytest.raises(CommandError):
        volume_cmd("-w", "acme", "-u", "owner", "get", "training-data", "../../etc/passwd", str(tmp_path / "x"))
    with pytest.raises(CommandError, match="--user"):
        volume_cmd("-w", "acme", "ls")


@pytest.mark.django_db
def test_get_to_stdout(volume, cast, capsysbinary):
    seed(volume, {"hello.txt": b"hello"}, user=cast["owner"])
    volume_cmd("-w", "acme", "-u", "owner", "get", "training-data", "hello.txt", "-")
    assert capsysbinary.readouterr().out.endswith(b"hello")


@pytest.mark.django_db(transaction=True)
def test_the_cli_against_a_remote_server(live_server, volume, cast, tmp_path, local_tree, monkeypatch):
    from rest_framework.authtoken.models import Token

    from volumes import tasks

    monkeypatch.setattr(tasks.run_job, "delay", lambda *a, **k: None)
    token = Token.objects.create(user=cast["owner"]).key
    roundtrip(lambda *a: volume_cmd("-w", "acme", "--server", live_server.url, "--token", token, *a),
              tmp_path, local_tree)
    with pytest.raises(CommandError, match="not found"):
        volume_cmd("-w", "acme", "--server", live_server.url, "--token", token, "ls", "training-data")


@pytest.mark.django_db(transaction=True)
def test_a_remote_upload_over_the_limit_says_so(live_server, volume, cast, tmp_path, settings):
    from rest_framework.authtoken.models import Token

    settings.VOLUMES = {**settings.VOLUMES, "MAX_FILE_SIZE": 1000}
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * (4 * 1024 * 1024))
    token = Token.objects.create(user=cast["owner"]).key
    with pytest.raises(CommandError, match="over the limit of 1,000 bytes"):
        volume_cmd("-w", "acme", "--server", live_server.url, "--token", token, "put", "training-data", str(big))


@pytest.mark.django_db(transaction=True)
def test_a_remote_upload_of_an_empty_file_sends_a_length_and_stores_it_empty(live_server, volume, cast, tmp_path):
    """requests streams an empty file chunked; a server that cannot read chunks would refuse it (411)."""
    from rest_framework.authtoken.models import Token

    from volumes.services import files

    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    token = Token.objects.create(user=cast["owner"]).key
    assert "uploaded 1 file" in volume_cmd("-w", "acme", "--server", live_server.url, "--token", token, "put",
                                           "training-data", str(empty))
    volume.refresh_from_db()
    assert files.entry_at(volume, "empty.txt").size == 0


@pytest.mark.django_db
def test_restore_tells_a_generation_that_never_existed_from_a_pruned_one(volume, cast):
    from volumes.models import VolumeCommit

    for i in range(3):
        seed(volume, {f"f{i}.txt": b"x"}, user=cast["owner"])
    with pytest.raises(CommandError, match="has no generation 99: it has generations 1 to 3"):
        volume_cmd("-w", "acme", "-u", "owner", "restore", "training-data", "99")
    VolumeCommit.objects.filter(volume=volume, generation=1).delete()  # what retention does to old generations
    with pytest.raises(CommandError, match="generation 1 of volume 'training-data' was pruned .* oldest kept is 2"):
        volume_cmd("-w", "acme", "-u", "owner", "restore", "training-data", "1")
