"""Storage settings are not a probe of the server: confined folders, no local endpoints, a check that
answers "works" or the step that failed."""
from __future__ import annotations

import json

import pytest

from tests.servers import S3_KEYS, S3_REGION, backend_config, free_port
from volumes.exceptions import StorageCheckFailed, StorageRefused
from volumes.storage.policy import check_storage_policy, storage_probe


@pytest.fixture
def no_allowance(settings):
    """Production's default: no host is allowed beyond the rules."""
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_ALLOWED_HOSTS": []}


@pytest.fixture
def base(settings, tmp_path):
    folder = tmp_path / "base"
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_BASE_DIR": folder}
    return folder


def s3(endpoint: str, bucket: str = "data") -> dict:
    return {"bucket": bucket, "endpoint_url": endpoint, "region": S3_REGION, **S3_KEYS}


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:9000", "http://localhost:9000", "http://127.8.9.10", "http://[::1]:9000",
    "http://[::ffff:127.0.0.1]:9000", "http://0.0.0.0:9000", "http://169.254.169.254", "http://[fe80::1]/",
])
def test_it_refuses_loopback_and_link_local_endpoints_without_the_allowance(no_allowance, endpoint):
    with pytest.raises(StorageRefused, match="loopback or link-local.*VOLUMES_STORAGE_ALLOWED_HOSTS"):
        check_storage_policy("s3", s3(endpoint), "acme", unconfined=True)


def test_the_refusal_comes_before_any_connection(no_allowance, moto_server):
    """A live local S3 server on an unlisted address is refused by rule, not by trying it."""
    with pytest.raises(StorageRefused) as refused:
        storage_probe("s3", s3(moto_server), "acme", unconfined=False)
    assert moto_server.rsplit(":", 1)[1] not in str(refused.value)


def test_the_operator_allows_hosts_by_address_network_or_name(settings):
    for allowed, endpoint in [(["127.0.0.1"], "http://127.0.0.1:9000"), (["127.0.0.0/8"], "http://127.3.3.3"),
                              (["localhost"], "http://localhost:9000"), (["::1"], "http://[::1]:9000"),
                              (["169.254.0.0/16"], "http://169.254.169.254")]:
        settings.VOLUMES = {**settings.VOLUMES, "STORAGE_ALLOWED_HOSTS": allowed}
        check_storage_policy("s3", s3(endpoint), "acme", unconfined=False)
    settings.VOLUMES = {**settings.VOLUMES, "STORAGE_ALLOWED_HOSTS": ["10.0.0.0/8"]}
    with pytest.raises(StorageRefused):
        check_storage_policy("s3", s3("http://127.0.0.1:9000"), "acme", unconfined=False)


def test_the_test_settings_allow_the_emulators_explicitly(settings):
    assert list(settings.VOLUMES["STORAGE_ALLOWED_HOSTS"]) == ["127.0.0.1"]


def test_azure_endpoints_from_connection_strings_and_gcs_token_uris_are_checked(no_allowance):
    key = "a2V5"
    for connection_string in [
        f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key};BlobEndpoint=http://127.0.0.1:10000/acct;",
        "UseDevelopmentStorage=true",
    ]:
        with pytest.raises(StorageRefused, match="loopback"):
            check_storage_policy("azure", {"container": "data", "connection_string": connection_string}, "acme", False)
    with pytest.raises(StorageRefused, match="loopback"):
        check_storage_policy("azure", {"container": "data", "account_name": "acct", "account_key": key,
                                       "endpoint": "http://169.254.169.254/acct"}, "acme", False)
    with pytest.raises(StorageRefused, match="account name"):
        check_storage_policy("azure", {"container": "data", "account_name": "127.0.0.1:80/x?", "account_key": key},
                             "acme", False)
    credentials = {"type": "service_account", "project_id": "p", "private_key_id": "1",
                   "private_key": _test_private_key(), "client_email": "a@p.iam.gserviceaccount.com",
                   "client_id": "1", "token_uri": "http://169.254.169.254/token"}
    with pytest.raises(StorageRefused, match="token_uri.*loopback or link-local"):
        check_storage_policy("gcs", {"bucket": "data", "credentials_json": json.dumps(credentials)}, "acme", False)
    with pytest.raises(StorageRefused, match="loopback"):
        check_storage_policy("gcs", {"bucket": "data", "endpoint": "http://localhost:4443"}, "acme", False)


def test_admins_must_bring_their_own_cloud_credentials(settings):
    with pytest.raises(StorageRefused, match="only a superuser may use the server's own AWS credentials"):
        check_storage_policy("s3", {"bucket": "data"}, "acme", unconfined=False)
    with pytest.raises(StorageRefused, match="service account key"):
        check_storage_policy("gcs", {"bucket": "data"}, "acme", unconfined=False)
    check_storage_policy("s3", {"bucket": "data", "region": "eu-west-1"}, "acme", unconfined=True)


def test_admins_keep_filesystem_roots_inside_their_workspace_folder(base, tmp_path):
    mine = base / "acme"
    check_storage_policy("filesystem", {"root": str(mine)}, "acme", unconfined=False)
    check_storage_policy("filesystem", {"root": str(mine / "volumes" / "deep")}, "acme", unconfined=False)
    for root in [str(tmp_path / "elsewhere"), str(base), str(base / "beta"), str(base / "acme-two"), "/etc",
                 f"{mine}/../beta"]:
        with pytest.raises(StorageRefused):
            check_storage_policy("filesystem", {"root": root}, "acme", unconfined=False)
    check_storage_policy("filesystem", {"root": str(tmp_path / "elsewhere")}, "acme", unconfined=True)
    assert not (tmp_path / "elsewhere").exists() and not mine.exists()  # the rules touch no disk


def test_the_refusal_names_the_workspace_folder_but_nothing_that_exists(base, tmp_path):
    (tmp_path / "secret-folder").mkdir()
    with pytest.raises(StorageRefused) as refused:
        storage_probe("filesystem", {"root": str(tmp_path / "secret-folder")}, "acme", unconfined=False)
    assert str(base / "acme") in str(refused.value) and "secret-folder" not in str(refused.value)


def test_a_working_storage_passes_the_check_and_leaves_nothing(request, tmp_path, storage_backend):
    kind, config = storage_backend
    if kind == "filesystem":
        storage_probe(kind, config, "acme", unconfined=True)
        from pathlib import Path

        assert [p for p in Path(config["root"]).rglob("*") if p.is_file()] == []
    else:
        storage_probe(kind, config, "acme", unconfined=False)


def test_the_check_names_the_step_and_the_cause(request, tmp_path, moto_server, moto_server_with_auth):
    missing = backend_config("s3", request, tmp_path, create=False)
    with pytest.raises(StorageCheckFailed, match=r"^Listing the storage failed: the bucket '.*' does not exist"):
        storage_probe("s3", missing, "acme", unconfined=False)
    wrong = {**s3(moto_server_with_auth, bucket="any-bucket"), "access_key": "nobody", "secret_key": "wrong"}
    with pytest.raises(StorageCheckFailed, match="credentials were refused"):
        storage_probe("s3", wrong, "acme", unconfined=False)
    port = free_port()
    with pytest.raises(StorageCheckFailed) as down:
        storage_probe("s3", s3(f"http://127.0.0.1:{port}"), "acme", unconfined=False)
    text = str(down.value)
    assert "cannot be reached" in text and str(port) not in text and "refused" not in text


def test_a_filesystem_failure_does_not_say_what_is_on_the_disk(base):
    (base / "acme").mkdir(parents=True)
    blocker = base / "acme" / "a-file"
    blocker.write_text("x")
    with pytest.raises(StorageCheckFailed) as failed:
        storage_probe("filesystem", {"root": str(blocker / "sub")}, "acme", unconfined=False)
    assert "a-file" not in str(failed.value) and "not a folder" not in str(failed.value)
    assert str(failed.value).startswith("Writing a test object failed")


def _test_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
