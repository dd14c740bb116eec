"""The API contract tells the truth: schemathesis with every check, real path parameters (an existing
workspace, volume, job and generation) and a workspace admin's token, stateless and stateful."""
from __future__ import annotations

import io
import shutil

import pytest

from volumes.services import files
from volumes.services.jobs import job_submit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def app_keeps_the_test_connection():
    """Like Django's test client: the WSGI app must not close the test's database connection per request."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def acme(workspace, cast, volume):
    files.file_put(volume, "a.txt", io.BytesIO(b"hello"), user=cast["owner"])
    files.file_put(volume, "b.txt", io.BytesIO(b"more"), user=cast["owner"])
    job = job_submit(workspace, cast["admin"], "python", "# volume: training-data data\ndef main():\n    pass\n",
                     enqueue=False)
    volume.refresh_from_db()
    return {"ws": workspace.pk, "name": volume.name, "job_id": job.pk, "generation": 1, "path": "a.txt",
            "pk": workspace.volume_storage_id}


@pytest.fixture
def schema():
    import schemathesis

    from volumes_site.wsgi import application

    schemathesis.serializer.alias("application/x-tar", "application/octet-stream")
    return schemathesis.openapi.from_wsgi("/api/schema/", application)


def admin_headers(cast) -> dict:
    from volumes.services.accounts import token_create

    return {"Authorization": f"Token {token_create(cast['admin'], 'contract')[1]}"}


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_operation_answers_as_its_schema_says_with_every_check(schema, acme, cast, mode):
    """Positive: every request the schema allows is accepted (or refused for a reason the schema names: 401,
    403, 404, 409...); negative: every request it forbids is refused. Plus every response check."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    headers = admin_headers(cast)
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        try:
            strategy = operation.as_strategy(GenerationMode(mode),
                                             path_parameters={k: v for k, v in acme.items() if k in names})
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{operation.label}: no strategy: {exc}")
            continue

        @settings(max_examples=4 if mode == "positive" else 3, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case):
            nonlocal calls
            calls += 1
            response = case.call(headers=headers)
            try:
                case.validate_response(response, headers=headers, excluded_checks=_excluded(operation))
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected and reported below
                failures.append(f"{operation.label}: {str(exc)[:700]}")

        try:
            run()
        except Unsatisfiable:  # negative mode: nothing of this operation can be made invalid (no inputs)
            assert mode == "negative", operation.label
    assert calls > 60
    assert not failures, "\n\n".join(sorted(set(failures)))


# Operations whose well-formed input is still refused for what no schema can say, so schema-valid data may be
# refused with 400 there (every other check still runs):
CONTENT_CHECKED = {
    # storage settings are checked against the real world before they are saved (the endpoint answers, the
    # credentials work, the bucket exists)
    "POST /api/w/{ws}/storages/", "POST /api/w/{ws}/storages/test/",
    # the body must be a tar archive; the schema can only say "bytes"
    "POST /api/w/{ws}/volumes/{name}/upload/",
    # exactly one of the query parameters user= and group=: OpenAPI cannot require one of two parameters
    "DELETE /api/w/{ws}/volumes/{name}/shares/",
    # the destination may be neither the source nor inside it: a relation between two fields, which the schema
    # cannot say (found by the stateful phase: {"src": "log_chunks", "dst": "log_chunks"})
    "POST /api/w/{ws}/volumes/{name}/move/",
}


def _excluded(operation) -> list:
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    return [positive_data_acceptance] if operation.label in CONTENT_CHECKED else []


def test_the_stateful_phase_finds_no_mismatch(schema, acme, cast, storage_root, tmp_path):
    """Sequences of calls linked by what earlier responses returned (schemathesis infers the links)."""
    from django.db import transaction
    from hypothesis import HealthCheck, Phase, settings

    headers = admin_headers(cast)
    base = schema.as_state_machine()
    calls = []

    class Machine(base):
        def setup(self):
            # Every scenario starts from the same database (a savepoint rolled back after it), so hypothesis
            # can replay and shrink what it found.
            # and the same storage (a deleted volume's objects come back with its rows).
            shutil.rmtree(tmp_path / "storage-copy", ignore_errors=True)
            shutil.copytree(storage_root, tmp_path / "storage-copy", symlinks=True)
            self._scenario = transaction.atomic()
            self._scenario.__enter__()

        def teardown(self):
            transaction.set_rollback(True)
            self._scenario.__exit__(None, None, None)
            shutil.rmtree(storage_root)
            shutil.copytree(tmp_path / "storage-copy", storage_root, symlinks=True)
            files._load_manifest.cache_clear()

        def before_call(self, case):
            # The real workspace, volume, job and generation, as in the stateless run.
            for name in case.path_parameters or {}:
                if name in acme:
                    case.path_parameters[name] = acme[name]

        def get_call_kwargs(self, case):
            return {"headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            calls.append(case.operation.label)
            case.validate_response(response, headers=headers, excluded_checks=_excluded(case.operation))

    Machine.run(settings=settings(max_examples=12, stateful_step_count=6, deadline=None, database=None,
                                  phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
    assert len(set(calls)) > 5, calls
