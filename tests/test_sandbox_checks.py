"""System checks warn about sandbox settings this machine cannot honour, and refuse job isolation settings
that would hand jobs the worker's secrets."""
import os

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from volumes.checks import check_volumes_settings


@pytest.fixture
def ids(settings):
    base = dict(settings.VOLUMES)

    def ids(**volumes):
        settings.VOLUMES = {**base, **volumes}
        return {message.id for message in check_volumes_settings(None)}

    return ids


def test_sandbox_all_without_nsjail_is_a_warning(ids, monkeypatch):
    assert "volumes.W001" not in ids(SANDBOX_ALL=True)
    monkeypatch.setenv("VOLUMES_NSJAIL", "/nonexistent/nsjail")
    assert "volumes.W001" in ids(SANDBOX_ALL=True)
    assert "volumes.W001" not in ids(SANDBOX_ALL=False)


def test_an_unknown_network_mode_is_an_error_and_internet_without_pasta_a_warning(ids, monkeypatch):
    assert "volumes.E003" in ids(SANDBOX_NETWORK="host")
    assert "volumes.E003" in ids(SANDBOX_ALLOW_NETWORKS=["not-a-network"])
    assert not {"volumes.E003", "volumes.W002"} & ids(SANDBOX_NETWORK="none")
    if os.geteuid() == 0:  # root, with ip, nft and pasta installed (scripts/test.sh installs them)
        assert "volumes.W002" not in ids(SANDBOX_NETWORK="internet")
    monkeypatch.setenv("PATH", "/nonexistent")  # pasta is in /usr/bin, found only through PATH
    assert "volumes.W002" in ids(SANDBOX_NETWORK="internet")


@pytest.mark.parametrize("name", ["SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "AWS_SECRET_ACCESS_KEY",
                                  "AZURE_STORAGE_CONNECTION_STRING", "GOOGLE_APPLICATION_CREDENTIALS"])
def test_allow_listing_a_worker_secret_for_jobs_fails_manage_py_check(settings, name):
    settings.VOLUMES = {**settings.VOLUMES, "JOB_ENV_ALLOW": ["HTTPS_PROXY", name]}
    errors = [m for m in check_volumes_settings(None) if m.id == "volumes.E004"]
    assert len(errors) == 1 and name in errors[0].msg and "HTTPS_PROXY" not in errors[0].msg
    assert "remove it from VOLUMES_JOB_ENV_ALLOW" in errors[0].msg
    with pytest.raises(SystemCheckError, match=name):
        call_command("check")


def test_allow_listing_harmless_variables_passes_manage_py_check(settings):
    settings.VOLUMES = {**settings.VOLUMES, "JOB_ENV_ALLOW": ["HTTPS_PROXY", "AWS_REGION"]}
    assert "volumes.E004" not in {m.id for m in check_volumes_settings(None)}
    call_command("check")
