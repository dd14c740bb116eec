"""One behavioural contract, run unchanged against real servers for all four kinds of storage.

filesystem: a temp folder; s3: moto_server; azure: azurite; gcs: gcp-storage-emulator.
"""
from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

from tests.servers import (
    AZURITE_KEY,
    KINDS,
    S3_KEYS,
    S3_REGION,
    backend_config,
    free_port,
    make_store,
    new_bucket_name,
)
from volumes.exceptions import BlobMissing, IntegrityError, InvalidPath, StorageUnavailable

BINARY = bytes(range(256)) * 7 + b"\x00\r\n\x1a\xff"
MiB = 1024 * 1024


@pytest.fixture
def store(storage_backend):
    kind, config = storage_backend
    return make_store(kind, {**config, "prefix": "tenant"} if kind != "filesystem" else config)


def test_put_and_get_bytes(store):
    store.put_bytes("a/b/binary", BINARY)
    store.put_bytes("a/empty", b"")
    assert store.get_bytes("a/b/binary") == BINARY
    assert store.get_bytes("a/empty") == b""
    assert store.size("a/b/binary") == len(BINARY)
    assert store.size("a/empty") == 0
    assert store.exists("a/b/binary") and store.exists("a/empty")
    assert not store.exists("a/b") and not store.exists("a/b/binar") and not store.exists("nothing")


def test_put_overwrites(store):
    store.put_bytes("k", b"first version, longer")
    store.put_bytes("k", b"second")
    assert store.get_bytes("k") == b"second"


def test_create_only_writes_never_replace_an_existing_object(store, tmp_path):
    """S3 and Azure: a conditional write (If-None-Match: *), proven here against moto and Azurite;
    filesystem: an exclusive link; GCS: ifGenerationMatch=0, which the test emulator keeps as GCS does
    (scripts/gcs_emulator.py; the fallback for a server that ignores it is tested at the end)."""
    big = os.urandom(12 * MiB + 5)
    small = tmp_path / "small"
    small.write_bytes(b"second version")
    large = tmp_path / "large"
    large.write_bytes(big)
    assert store.put_bytes("once/a", b"first", create_only=True) is True
    assert store.put_bytes("once/a", b"second", create_only=True) is False
    assert store.put_file("once/a", small, create_only=True) is False
    assert store.put_file("once/a", large, sha256=hashlib.sha256(big).hexdigest(), create_only=True) is False
    assert store.get_bytes("once/a") == b"first"
    assert store.put_file("once/big", large, sha256=hashlib.sha256(big).hexdigest(), create_only=True) is True
    assert store.put_file("once/big", small, create_only=True) is False
    assert store.get_bytes("once/big") == big
    assert sorted(store.list("once/")) == ["once/a", "once/big"]


def test_copy_happens_inside_the_storage_and_never_replaces_an_object(store, tmp_path, monkeypatch):
    """Duplicating a volume copies its blobs with this: a hard link, or the storage's own server-side copy;
    create-only like put_bytes(create_only=True)."""
    big = os.urandom(12 * MiB + 3)
    (tmp_path / "big").write_bytes(big)
    store.put_bytes("src/small", BINARY)
    store.put_bytes("src/empty", b"")
    store.put_file("src/big", tmp_path / "big")
    store.put_bytes("dst/taken", b"mine")

    def through_this_process(*args, **kwargs):
        raise AssertionError("the copy read the object through this process")

    for name in ("get_file", "get_file_sha256", "get_bytes", "open_read"):
        monkeypatch.setattr(type(store), name, through_this_process)
    assert store.copy("src/small", "dst/small") is True
    assert store.copy("src/empty", "dst/deeper/empty") is True
    assert store.copy("src/big", "dst/big") is True
    assert store.copy("src/small", "dst/taken") is False
    with pytest.raises(BlobMissing) as missing:
        store.copy("src/nothing", "dst/nothing")
    assert missing.value.details["key"] == "src/nothing"
    with pytest.raises(InvalidPath):
        store.copy("src/small", "../escape")
    monkeypatch.undo()
    assert store.get_bytes("dst/small") == BINARY and store.get_bytes("dst/deeper/empty") == b""
    assert store.get_bytes("dst/big") == big
    assert store.get_bytes("dst/taken") == b"mine"
    assert not store.exists("dst/nothing")
    store.delete("src/small")  # the copy is an object of its own
    assert store.get_bytes("dst/small") == BINARY
    assert sorted(store.list("dst/")) == ["dst/big", "dst/deeper/empty", "dst/small", "dst/taken"]


def test_s3_copies_objects_over_5_gib_in_parts(request, tmp_path, monkeypatch):
    """CopyObject stops at 5 GiB; bigger objects are copied part by part (UploadPartCopy), proven here with
    the limit lowered."""
    from volumes.storage import s3

    monkeypatch.setattr(s3, "COPY_LIMIT", 6 * MiB)
    monkeypatch.setattr(s3, "PART_SIZE", 5 * MiB)
    store = make_store("s3", backend_config("s3", request, tmp_path))
    data = os.urandom(13 * MiB + 1)
    store.put_bytes("a", data)
    store.put_bytes("taken", b"mine")
    assert store.copy("a", "b") is True and store.get_bytes("b") == data
    assert store.copy("a", "taken") is False and store.get_bytes("taken") == b"mine"
    assert sorted(store.list("")) == ["a", "b", "taken"]


@pytest.mark.parametrize("size", [1000, 12 * MiB + 7], ids=["single put", "multipart"])
def test_a_file_whose_bytes_do_not_match_the_hash_is_never_stored(store, tmp_path, size):
    """What a push hashed and what it reads while uploading differ when something writes to the file
    in between: the upload fails and leaves nothing under the key, not even a hidden part."""
    hashed = os.urandom(size)
    path = tmp_path / "changing"
    path.write_bytes(hashed[:-1] + bytes([hashed[-1] ^ 1]))  # the last byte changed after hashing
    digest = hashlib.sha256(hashed).hexdigest()
    with pytest.raises(IntegrityError, match="changed while it was uploaded"):
        store.put_file("verified/blob", path, sha256=digest, create_only=True)
    path.write_bytes(hashed + b"more")  # grew after hashing
    with pytest.raises(IntegrityError, match="changed"):
        store.put_file("verified/blob", path, sha256=digest, create_only=True)
    assert not store.exists("verified/blob") and list(store.list("verified/")) == []
    if store.kind == "s3":
        assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    path.write_bytes(hashed)
    assert store.put_file("verified/blob", path, sha256=digest, create_only=True) is True
    assert store.get_bytes("verified/blob") == hashed


def test_files_up_and_down_including_a_12_mb_one(store, tmp_path):
    big = os.urandom(12 * MiB + 12345)  # S3 multipart, Azure block upload, GCS resumable upload
    sources = {"big": big, "empty": b"", "binary": BINARY}
    for name, data in sources.items():
        (tmp_path / name).write_bytes(data)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda name: store.put_file(f"files/{name}", tmp_path / name), sources))
    for name, data in sources.items():
        target = tmp_path / f"down-{name}"
        target.write_bytes(b"old content that is longer than some of the new files" * 100)
        store.get_file(f"files/{name}", target)
        assert target.read_bytes() == data, name
        assert store.size(f"files/{name}") == len(data)
    assert store.get_bytes("files/big") == big


def test_a_missing_key_raises_blob_missing_naming_key_and_storage(store, tmp_path):
    calls = {
        "get_bytes": lambda: store.get_bytes("no/such/key"),
        "get_file": lambda: store.get_file("no/such/key", tmp_path / "x"),
        "size": lambda: store.size("no/such/key"),
        "open_read": lambda: store.open_read("no/such/key"),  # raises before the first chunk
        "open_read range": lambda: store.open_read("no/such/key", 5, 10),
    }
    for name, call in calls.items():
        with pytest.raises(BlobMissing) as info:
            call()
        assert "no/such/key" in str(info.value) and store.label in str(info.value), name
    assert not store.exists("no/such/key")


def test_absent_names_exactly_the_keys_without_an_object_in_order(store):
    keys = [f"volumes/w/v/blobs/{i:02d}" for i in range(12)]
    for key in keys[::3]:
        store.put_bytes(key, b"x")
    if store.kind != "filesystem":  # (a key cannot also be a folder on a filesystem)
        store.put_bytes(f"{keys[5]}/below", b"x")  # a key that is only the start of others has no object
    assert store.absent(keys) == [key for i, key in enumerate(keys) if i % 3]
    assert store.absent([]) == []


def test_delete_is_idempotent(store):
    store.put_bytes("d/x", b"1")
    store.delete("d/x")
    assert not store.exists("d/x")
    store.delete("d/x")
    store.delete("never/there")
    assert list(store.list("d/")) == []


def test_list_is_complete_past_1000_keys_and_sibling_prefixes_do_not_leak(store):
    a = [f"volumes/w/a/blobs/{i:05d}" for i in range(1100)]
    ab = ["volumes/w/ab/blobs/1", "volumes/w/ab/manifests/2.json", "volumes/w/abc"]
    other = ["volumes/w/b", "volumes/x/a/1"]  # (a key cannot also be a folder on a filesystem)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: store.put_bytes(key, key.encode()), a + ab + other))
    assert sorted(store.list("volumes/w/a/")) == sorted(a)
    assert sorted(store.list("volumes/w/ab/")) == sorted(ab[:2])
    assert sorted(store.list("volumes/w/ab")) == sorted(ab)
    assert sorted(store.list("")) == sorted(a + ab + other)
    assert store.delete_prefix("volumes/w/a/") == 1100
    assert list(store.list("volumes/w/a/")) == []
    assert sorted(store.list("")) == sorted(ab + other)
    assert store.get_bytes("volumes/w/b") == b"volumes/w/b"
    assert store.delete_prefix("volumes/nothing/") == 0


def test_open_read_streams_whole_objects_and_ranges(store):
    data = os.urandom(3 * MiB + 777)
    store.put_bytes("r", data)
    store.put_bytes("empty", b"")
    size = len(data)

    def read(*args):
        chunks = list(store.open_read("r", *args))
        assert all(isinstance(chunk, bytes) for chunk in chunks)
        return b"".join(chunks)

    assert read() == data
    assert len(list(store.open_read("r"))) > 1  # streamed, not one blob of memory
    assert read(0, 10) == data[:10]
    assert read(5, 2 * MiB + 3) == data[5:2 * MiB + 3]
    assert read(size - 3) == data[-3:]
    assert read(size - 3, size + 100) == data[-3:]  # clamped to the size
    assert read(100, 100) == b""
    assert read(size) == b""
    assert read(size + 10) == b""
    assert b"".join(store.open_read("empty")) == b""
    with pytest.raises(ValueError):
        store.open_read("r", 10, 5)


def test_unusual_key_characters_round_trip(store):
    keys = ["volumes/w/ünï cödé/ファイル.txt", "volumes/w/50%off/a+b=c&d", "volumes/w/sp ace/'quote'\"", "-rf"]
    for key in keys:
        store.put_bytes(key, key.encode())
    for key in keys:
        assert store.get_bytes(key) == key.encode()
    assert sorted(store.list("volumes/w/")) == sorted(keys[:3])


def test_bad_keys_are_refused(store):
    for key in ["", "/abs", "../up", "a/../b", "a//b", "./a", "a/", "a\\b", "a\x00b"]:
        with pytest.raises(InvalidPath):
            store.put_bytes(key, b"x")
        with pytest.raises(InvalidPath):
            store.get_bytes(key)


def test_check_passes_on_a_working_storage_and_leaves_nothing_behind(store):
    store.check()
    assert list(store.list("")) == []


def test_list_names_gives_every_key_under_a_prefix_or_none_past_the_limit(store):
    for i in range(12):
        store.put_bytes(f"blobs/k{i:02d}", b"x")
    store.put_bytes("blobsy/other", b"x")
    store.put_bytes("other/k01", b"x")
    assert store.list_names("blobs/", limit=12) == {f"blobs/k{i:02d}" for i in range(12)}
    assert store.list_names("blobs/", limit=11) is None
    assert store.list_names("nothing/", limit=0) == set()


def test_stores_with_different_prefixes_in_one_bucket_are_isolated(storage_backend):
    kind, config = storage_backend
    if kind == "filesystem":
        config = {**config, "root": config["root"]}
    p = make_store(kind, {**config, "prefix": "p"})
    pp = make_store(kind, {**config, "prefix": "pp"})
    whole = make_store(kind, {k: v for k, v in config.items() if k != "prefix"})
    p.put_bytes("k", b"p")
    pp.put_bytes("k", b"pp")
    assert p.get_bytes("k") == b"p" and pp.get_bytes("k") == b"pp"
    assert list(p.list("")) == ["k"] and list(pp.list("")) == ["k"]
    assert sorted(whole.list("")) == ["p/k", "pp/k"]
    assert p.delete_prefix("") == 1
    assert list(pp.list("")) == ["k"]


def test_stores_are_cached_per_configuration(storage_backend):
    from volumes.storage.factory import store_for_storage

    kind, config = storage_backend

    class Row:
        def __init__(self, name, config):
            self.kind, self.config, self.name = kind, config, name

    first = store_for_storage(Row("primary", config))
    assert store_for_storage(Row("primary", dict(config))) is first
    assert "primary" in first.label
    assert store_for_storage(Row("primary", {**config, "prefix": "other"})) is not first


# --- a storage that is down, or refuses the credentials --------------------------------------


def _down_config(kind, tmp_path):
    """A config whose server is not there (nothing listens on the port)."""
    port = free_port()
    if kind == "filesystem":
        blocker = tmp_path / "not-a-folder"
        blocker.write_bytes(b"a file where the root folder should be")
        return {"root": str(blocker)}
    if kind == "s3":
        return {"bucket": "b-down", "endpoint_url": f"http://127.0.0.1:{port}", "region": S3_REGION, **S3_KEYS}
    if kind == "azure":
        return {"container": "c-down", "connection_string": (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")}
    return {"bucket": "b-down", "endpoint": f"http://127.0.0.1:{port}", "project": "test"}


def _assert_unavailable_fast(store, call, limit=10.0):
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        result = call()
        if hasattr(result, "__next__"):
            list(result)
    elapsed = time.monotonic() - started
    assert elapsed < limit, f"took {elapsed:.1f} s"
    assert store.label in str(info.value)
    assert info.value.status == 503
    return str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_storage_that_is_down_fails_fast_with_storage_unavailable(kind, tmp_path):
    store = make_store(kind, _down_config(kind, tmp_path))
    (tmp_path / "local").write_bytes(b"x")
    calls = [store.check, lambda: store.put_bytes("k", b"x"), lambda: store.get_bytes("k"),
             lambda: store.exists("k"), lambda: store.list(""), lambda: store.put_file("k", tmp_path / "local"),
             lambda: store.get_file("k", tmp_path / "down"), lambda: store.open_read("k", 1, 2),
             lambda: store.delete_prefix(""), lambda: store.absent(["k", "j"])]
    with ThreadPoolExecutor(len(calls)) as pool:  # each call is timed on its own; together they save time
        messages = list(pool.map(lambda call: _assert_unavailable_fast(store, call), calls))
    assert all("Check that it is running" in message for message in messages)


@pytest.mark.parametrize("kind", ["s3", "azure", "gcs"])
def test_a_missing_bucket_is_storage_unavailable_not_a_missing_blob(kind, request, tmp_path):
    config = backend_config(kind, request, tmp_path, create=False)
    store = make_store(kind, config)
    calls = [store.check, lambda: store.put_bytes("k", b"x"), lambda: store.get_bytes("k"),
             lambda: store.size("k"), lambda: store.get_file("k", tmp_path / "x"), lambda: store.list(""),
             lambda: store.open_read("k")]
    for call in calls:
        assert f"{config.get('bucket') or config['container']!r} does not exist" in _assert_unavailable_fast(store, call)


def test_azure_with_a_wrong_account_key_is_storage_unavailable(request, tmp_path):
    config = backend_config("azure", request, tmp_path)
    wrong = config["connection_string"].replace(AZURITE_KEY, "d3Jvbmcta2V5" * 7 + "AAAA")
    store = make_store("azure", {**config, "connection_string": wrong})
    message = _assert_unavailable_fast(store, store.check)
    assert "access was refused" in message
    assert "d3Jvbmcta2V5" not in message
    _assert_unavailable_fast(store, lambda: store.get_bytes("k"))


def test_s3_with_an_unknown_access_key_is_storage_unavailable(moto_server_with_auth):
    """moto checks access keys only with authentication switched on (its IAM knows no keys here)."""
    store = make_store("s3", {"bucket": new_bucket_name(), "endpoint_url": moto_server_with_auth,
                              "region": S3_REGION, "access_key": "AKIAWRONGWRONGWRONG0", "secret_key": "nope"})
    message = _assert_unavailable_fast(store, store.check)
    assert "access was refused" in message and "nope" not in message


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_big_files_go_up_in_parallel_parts(kind, request, tmp_path):
    """12 MiB: an S3 multipart upload (2 parts of 8 MiB), an Azure block upload (3 blocks of 4 MiB)."""
    config = backend_config(kind, request, tmp_path)
    store = make_store(kind, config)
    (tmp_path / "big").write_bytes(os.urandom(12 * MiB))
    store.put_file("big", tmp_path / "big")
    if kind == "s3":
        assert store.client.head_object(Bucket=config["bucket"], Key="big")["ETag"].strip('"').endswith("-2")
    else:
        committed, _ = store.client.get_blob_client("big").get_block_list("committed")
        assert len(committed) == 3


def test_azure_with_account_name_key_and_endpoint(request, tmp_path):
    config = backend_config("azure", request, tmp_path)
    server = request.getfixturevalue("azurite")
    store = make_store("azure", {"container": config["container"], "account_name": server.account_name,
                                 "account_key": server.account_key, "endpoint": server.endpoint})
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v" and list(store.list("")) == ["k"]
    store.check()


# --- configuration: storage URLs, labels, validation (no servers) ---------------------------

from volumes.storage.factory import KINDS as FACTORY_KINDS  # noqa: E402
from volumes.storage.factory import build_store, parse_storage_url, storage_url_label  # noqa: E402

AZ_CS = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + AZURITE_KEY
         + ";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")


def test_kinds():
    assert FACTORY_KINDS == KINDS == ("filesystem", "s3", "azure", "gcs")


@pytest.mark.parametrize("url,kind,config", [
    ("file:///srv/volumes", "filesystem", {"root": "/srv/volumes"}),
    ("file:///srv/volumes/", "filesystem", {"root": "/srv/volumes"}),
    ("file://localhost/srv/my%20volumes", "filesystem", {"root": "/srv/my volumes"}),
    ("s3://bucket", "s3", {"bucket": "bucket"}),
    ("s3://bucket/some/prefix/?endpoint_url=http://127.0.0.1:9000&region=eu-west-1&access_key=AK&secret_key=a%2Bb+c",
     "s3", {"bucket": "bucket", "prefix": "some/prefix", "endpoint_url": "http://127.0.0.1:9000",
            "region": "eu-west-1", "access_key": "AK", "secret_key": "a+b+c"}),
    ("az://container/p?connection_string=" + AZ_CS, "azure",
     {"container": "container", "prefix": "p", "connection_string": AZ_CS}),
    ("az://container?account_name=acct&account_key=a%2Fb%3D%3D&endpoint=http://127.0.0.1:1/acct", "azure",
     {"container": "container", "account_name": "acct", "account_key": "a/b==", "endpoint": "http://127.0.0.1:1/acct"}),
    ("gs://bucket/pre?endpoint=http://127.0.0.1:9023&project=p1", "gcs",
     {"bucket": "bucket", "prefix": "pre", "endpoint": "http://127.0.0.1:9023", "project": "p1"}),
])
def test_parse_storage_url(url, kind, config):
    assert parse_storage_url(url) == (kind, config)


@pytest.mark.parametrize("url,why", [
    ("/srv/volumes", "not a storage URL"),
    ("file://relative/path", "absolute"),
    ("file:relative", "not a storage URL"),
    ("file:///srv?x=1", "no query"),
    ("ftp://host/x", "unknown storage URL scheme"),
    ("s3://", "names no bucket"),
    ("s3:///prefix", "names no bucket"),
    ("gs://?endpoint=x", "names no bucket"),
    ("az:///p?connection_string=x", "names no container"),
    ("az://container/p", "needs a connection_string"),
    ("s3://user:pw@bucket/p", "query parameters"),
    ("s3://bucket?access_key=a", "both the access key and the secret key"),
    ("s3://bucket?acess_key=a", "unknown parameter 'acess_key'"),
    ("s3://bucket?region=a&region=b", "twice"),
    ("s3://Bucket_Upper", "not a valid bucket name"),
    ("s3://bucket/a/../b", "plain relative path"),
    ("gs://bucket#frag", "fragment"),
])
def test_parse_storage_url_refuses_with_a_clear_message(url, why):
    with pytest.raises(ValueError) as info:
        parse_storage_url(url)
    assert why in str(info.value)


@pytest.mark.parametrize("kind,config,why", [
    ("ftp", {}, "unknown storage kind 'ftp'"),
    ("filesystem", {}, "needs 'root'"),
    ("filesystem", {"root": "relative"}, "absolute"),
    ("s3", {"bucket": ""}, "needs 'bucket'"),
    ("s3", {"bucket": "b1b", "endpoint": "x"}, "unknown setting(s) 'endpoint'"),
    ("azure", {"container": "c1c"}, "connection_string, or account_name and account_key"),
    ("azure", {"container": "c1c", "account_name": "a"}, "connection_string, or account_name and account_key"),
    ("gcs", {"bucket": "b1b", "credentials_json": "{not json"}, "not valid JSON"),
    ("gcs", {"prefix": "p"}, "needs 'bucket'"),
])
def test_build_store_refuses_bad_configurations(kind, config, why):
    with pytest.raises(ValueError) as info:
        build_store(kind, config)
    assert why in str(info.value)


def test_labels_never_show_secrets():
    secrets_ = ["SECRET-S3", "SECRET-AZ", AZURITE_KEY, "PRIVATE-KEY-JSON", "pw"]
    labels = [
        storage_url_label("s3", {"bucket": "b", "prefix": "p", "endpoint_url": "http://u:pw@h:9000/x?sig=1",
                                 "access_key": "AK", "secret_key": "SECRET-S3"}),
        storage_url_label("azure", {"container": "c", "connection_string": AZ_CS}),
        storage_url_label("azure", {"container": "c", "account_name": "acct", "account_key": "SECRET-AZ"}),
        storage_url_label("gcs", {"bucket": "b", "credentials_json": '{"private_key": "PRIVATE-KEY-JSON"}'}),
        storage_url_label("filesystem", {"root": "/srv/v"}),
    ]
    assert labels == [
        "s3://b/p at http://h:9000/x",
        "az://c at http://127.0.0.1:10000/devstoreaccount1",
        "az://c (account acct)",
        "gs://b",
        "file:///srv/v",
    ]
    for label in labels:
        assert not any(secret in label for secret in secrets_), label


def test_local_file_errors_are_the_callers_not_the_storages(store, tmp_path):
    with pytest.raises(FileNotFoundError):
        store.put_file("k", tmp_path / "no-such-local-file")
    store.put_bytes("k", b"v")
    with pytest.raises(FileNotFoundError):
        store.get_file("k", tmp_path / "no-such-folder" / "target")


def test_a_volume_s_objects_are_found_through_its_storage_and_its_prefix(tmp_path):
    from types import SimpleNamespace

    from volumes.storage.factory import store_for_storage, store_for_volume
    from volumes.storage.keys import volume_prefix

    storage = SimpleNamespace(kind="filesystem", config={"root": str(tmp_path)}, name="main")
    store, prefix = store_for_volume(SimpleNamespace(storage=storage, workspace_id="acme", name="data"))
    assert store is store_for_storage(storage) and prefix == volume_prefix("acme", "data")


def test_an_s3_download_of_a_blob_is_one_get_and_a_cut_leaves_nothing_behind(request, tmp_path, monkeypatch):
    """download_file asked HEAD then GET for every blob: a cold pull of 10,000 small files made 20,000 requests."""
    from botocore.response import StreamingBody

    store = make_store("s3", backend_config("s3", request, tmp_path))
    store.put_bytes("blobs/small", BINARY)
    calls = []
    store.client.meta.events.register("before-call.s3", lambda model, **kwargs: calls.append(model.name))
    assert store.get_file_sha256("blobs/small", tmp_path / "small") == hashlib.sha256(BINARY).hexdigest()
    store.get_file("blobs/small", tmp_path / "again")
    assert (tmp_path / "again").read_bytes() == BINARY and calls == ["GetObject", "GetObject"]

    def cut(self, chunk_size):
        yield self.read(10)
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(StreamingBody, "iter_chunks", cut)
    with pytest.raises(StorageUnavailable):
        store.get_file("blobs/small", tmp_path / "cut")
    assert not (tmp_path / "cut").exists()


class _Requests:
    """Every HTTP request the Azure and GCS stores make (through requests, or urllib3 itself: both end in a
    connection pool's urlopen)."""

    def __init__(self, monkeypatch) -> None:
        from urllib3.connectionpool import HTTPConnectionPool

        self.made: list[str] = []
        urlopen = HTTPConnectionPool.urlopen

        def counted(pool, method, url, *args, **kwargs):
            self.made.append(method)
            return urlopen(pool, method, url, *args, **kwargs)

        monkeypatch.setattr(HTTPConnectionPool, "urlopen", counted)


@pytest.mark.parametrize("kind", ["azure", "gcs"])
def test_a_blob_download_is_one_get_hashed_as_it_is_written_and_a_cut_leaves_nothing_behind(kind, request, tmp_path,
                                                                                             monkeypatch):
    """A cold pull of 10,000 small blobs is 10,000 of these: one GET each, the bytes hashed on their way to the
    file (they were read again to hash them), and a download cut midway leaves no partial file (it did)."""
    import urllib3
    from urllib3.exceptions import ProtocolError

    from volumes.storage import azure, base

    store = make_store(kind, backend_config(kind, request, tmp_path))
    if kind == "gcs":
        store.retry = store.retry.with_timeout(0.5)  # the cut below is retried: give up soon
    store.put_bytes("blobs/small", BINARY)

    def read_again(path):
        raise AssertionError(f"{path} was read again to hash it")

    monkeypatch.setattr(base, "sha256_of_file", read_again)
    monkeypatch.setattr(azure, "sha256_of_file", read_again, raising=False)
    requests = _Requests(monkeypatch)
    assert store.get_file_sha256("blobs/small", tmp_path / "small") == hashlib.sha256(BINARY).hexdigest()
    assert (tmp_path / "small").read_bytes() == BINARY and requests.made == ["GET"]
    store.get_file("blobs/small", tmp_path / "again")
    assert (tmp_path / "again").read_bytes() == BINARY and requests.made == ["GET", "GET"]

    stream = urllib3.response.HTTPResponse.stream

    def cut(self, *args, **kwargs):
        yield next(stream(self, 10, **{k: v for k, v in kwargs.items() if k != "amt"}))
        raise ProtocolError("Connection broken: connection reset by peer")

    monkeypatch.setattr(urllib3.response.HTTPResponse, "stream", cut)
    with pytest.raises(StorageUnavailable):
        store.get_file("blobs/small", tmp_path / "cut")
    assert not (tmp_path / "cut").exists()


def test_a_gcs_create_only_upload_is_one_request_where_the_server_keeps_ifgenerationmatch(request, tmp_path,
                                                                                         monkeypatch):
    """GCS refuses ifGenerationMatch=0 over a live object itself: asking whether the blob exists first (a GET
    before each upload, as for an emulator that ignores the condition) doubled a push's requests."""
    store = make_store("gcs", backend_config("gcs", request, tmp_path))
    (tmp_path / "blob").write_bytes(BINARY)
    digest = hashlib.sha256(BINARY).hexdigest()
    assert store.put_bytes("first", b"x", create_only=True) is True  # the store finds out what the server does
    requests = _Requests(monkeypatch)
    assert store.put_file("blobs/new", tmp_path / "blob", sha256=digest, create_only=True) is True
    assert requests.made == ["POST"]
    assert store.put_file("blobs/new", tmp_path / "blob", sha256=digest, create_only=True) is False
    assert store.put_bytes("first", b"second", create_only=True) is False
    assert requests.made == ["POST", "POST", "POST"]
    assert store.get_bytes("first") == b"x" and sorted(store.list("")) == ["blobs/new", "first"]


def test_a_gcs_server_that_ignores_ifgenerationmatch_is_asked_first(tmp_path, server_logs, monkeypatch):
    """The plain gcp-storage-emulator (as PrivateStorage starts it) overwrites despite ifGenerationMatch=0: the
    store finds that out and keeps create-only writes by asking first."""
    from tests.servers import PrivateStorage

    storage = PrivateStorage("gcs", tmp_path, server_logs)
    try:
        store = make_store("gcs", storage.config)
        (tmp_path / "other").write_bytes(b"other")
        assert store.put_bytes("k", b"first", create_only=True) is True
        assert store.put_bytes("k", b"second", create_only=True) is False
        assert store.put_file("k", tmp_path / "other", create_only=True) is False
        assert store.get_bytes("k") == b"first" and list(store.list("")) == ["k"]
        requests = _Requests(monkeypatch)
        assert store.put_bytes("j", b"new", create_only=True) is True
        assert requests.made == ["GET", "POST"]  # does it exist? then the upload
    finally:
        storage.close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    """A test server's handler that logs nothing and answers with `answer`."""

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def relay(self, host: str, port: int, path: str) -> tuple[int, bytes]:
        """This request, sent on to host:port as `path`: (status, body) of the answer."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(host, port, timeout=10)
        try:
            upstream.request(self.command, path, body=body or None, headers={
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-authorization")})
            answer = upstream.getresponse()
            return answer.status, answer.read()
        finally:
            upstream.close()

    def log_message(self, *args):
        pass


@contextmanager
def _serving(*handlers: type) -> Iterator[list[str]]:
    """A server on 127.0.0.1 for each handler class; yields their base URLs."""
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) for handler in handlers]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield [f"http://127.0.0.1:{server.server_address[1]}" for server in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_gcs_downloads_go_through_the_proxy_the_environment_names_as_requests_would(request, tmp_path, monkeypatch):
    """The store's downloads use their own HTTP pool (storage/gcs.py `_http`): a worker behind a proxy
    (HTTP_PROXY, NO_PROXY) must reach the storage through it exactly as the client's other requests do."""
    seen: list[str] = []

    class Forwarding(_Quiet):
        def do_GET(self):  # a proxy gets the absolute URL: forward it to the server it names
            seen.append(self.path)
            target = urlsplit(self.path)
            origin = f"{target.scheme}://{target.netloc}"
            self.answer(*self.relay(target.hostname, target.port, self.path[len(origin):]))

    with _serving(Forwarding) as (proxy,):
        config = backend_config("gcs", request, tmp_path)
        make_store("gcs", config).put_bytes("k", BINARY)
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        proxied = make_store("gcs", config)
        assert proxied.get_bytes("k") == BINARY
        assert proxied.get_file_sha256("k", tmp_path / "k") == hashlib.sha256(BINARY).hexdigest()
        assert len(seen) == 2 and all(url.startswith(config["endpoint"]) and "alt=media" in url for url in seen)

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert make_store("gcs", config).get_bytes("k") == BINARY and len(seen) == 2


def test_gcs_transfers_carry_the_service_accounts_token_and_refresh_it_when_the_storage_refuses_it(
        request, tmp_path):
    """Blob transfers go through the store's own HTTP pool (storage/gcs.py `_http`), not the client's session:
    they must still carry the service account's token, fetched from its token_uri, and fetch a new one when the
    storage answers 401 (a token revoked or expired early), then succeed. A front server records the tokens
    and refuses the first one; behind it, the emulator."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    issued: list[str] = []
    bearers: list[str] = []
    emulator = urlsplit(request.getfixturevalue("gcs_emulator"))

    class Tokens(_Quiet):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            issued.append(f"token-{len(issued) + 1}")
            self.answer(200, json.dumps({"access_token": issued[-1], "expires_in": 3600,
                                         "token_type": "Bearer"}).encode())

    class Front(_Quiet):
        def refuse_the_first_token(self):
            bearer = self.headers.get("Authorization", "")
            bearers.append(bearer)
            if bearer == "Bearer token-1" and "blobs%2F" in self.path:  # the blob's name, in the path or query
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.answer(401, b'{"error": {"code": 401, "message": "token revoked"}}')
            else:
                self.answer(*self.relay(emulator.hostname, emulator.port, self.path))

        do_GET = do_POST = do_DELETE = refuse_the_first_token

    with _serving(Tokens, Front) as (tokens, front):
        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        key = {"type": "service_account", "project_id": "test", "private_key_id": "k1", "private_key": pem,
               "client_email": "worker@test.iam.gserviceaccount.com", "client_id": "1",
               "token_uri": f"{tokens}/token"}
        config = backend_config("gcs", request, tmp_path)
        store = make_store("gcs", {**config, "endpoint": front, "credentials_json": json.dumps(key)})
        store.retry = store.retry.with_timeout(1)
        (tmp_path / "blob").write_bytes(BINARY)
        digest = hashlib.sha256(BINARY).hexdigest()
        assert store.put_file(f"blobs/{digest}", tmp_path / "blob", sha256=digest, create_only=True)
        assert store.get_file_sha256(f"blobs/{digest}", tmp_path / "back") == digest
        assert (tmp_path / "back").read_bytes() == BINARY
        assert issued == ["token-1", "token-2"], issued  # refused once, fetched again once
        assert "Bearer token-1" in bearers and bearers[-1] == "Bearer token-2"
        assert all(bearer.startswith("Bearer token-") for bearer in bearers)  # every request, the client's too
