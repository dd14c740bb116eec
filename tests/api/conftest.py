"""API test helpers: clients authenticated with real tokens, and jobs that are never sent to Celery."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_celery(monkeypatch):
    """Jobs created through the API stay queued: no task reaches a broker other tests' workers read."""
    from volumes import tasks

    monkeypatch.setattr(tasks.run_job, "delay", lambda *a, **k: None)


@pytest.fixture
def client_for(cast):
    """client_for("owner") -> an APIClient sending that user's token; client_for(None) is anonymous."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(name):
        client = APIClient()
        if name is not None:
            token, _ = Token.objects.get_or_create(user=cast[name])
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def owner_api(client_for):
    return client_for("owner")
