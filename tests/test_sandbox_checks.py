"""System checks warn about sandbox settings this machine cannot honour."""
import os

import pytest

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
