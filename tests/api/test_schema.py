"""The OpenAPI schema generates without warnings, the docs page serves, and random input never gives a 500."""
import io
import string

import pytest
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import seed


def test_the_schema_generates_without_errors_or_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    schema = out.getvalue()
    for route in ["/api/w/{ws}/volumes/", "/api/w/{ws}/volumes/{name}/files/{path}", "/api/w/{ws}/agent/claim/",
                  "/api/w/{ws}/agent/jobs/{job_id}/volumes/{name}/commit/"]:
        assert f'"{route}"' in schema, route


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower() and b"/static/drf_spectacular_sidecar/" in docs.content


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
PATHS = st.lists(st.sampled_from(["..", ".", "a", "b c", "%2e", "%252e", "\\", "~", "", "x" * 300, "ü", "\x00"]),
                 min_size=1, max_size=6).map("/".join)
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                       max_leaves=8)


@pytest.fixture
def api(client_for, volume, cast):
    seed(volume, {"a/b.txt": b"b"}, user=cast["owner"])
    return client_for("owner")


V = "/api/w/acme/volumes/training-data/"


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, method=st.sampled_from(["get", "put", "delete"]))
def test_random_paths_never_give_a_server_error(api, path, method):
    from urllib.parse import quote

    url = V + "files/" + quote(path, safe="/%")
    if method == "put":
        response = api.generic("PUT", url, b"x", content_type="application/octet-stream")
    else:
        response = getattr(api, method)(url)
    assert response.status_code < 500, (path, response.status_code)


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    endpoint=st.sampled_from(["volumes/", "jobs/", "volumes/training-data/folders/", "volumes/training-data/move/",
                              "volumes/training-data/shares/", "agent/claim/"]),
    data=JSONISH,
)
def test_random_json_bodies_never_give_a_server_error(api, endpoint, data):
    response = api.post("/api/w/acme/" + endpoint, data, format="json")
    assert response.status_code < 500, (endpoint, data, response.status_code)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(alphabet=string.printable + "\x00", min_size=1, max_size=20))
def test_random_volume_and_workspace_names_never_give_a_server_error(api, name):
    from urllib.parse import quote

    for url in [f"/api/w/acme/volumes/{quote(name, safe='')}/", f"/api/w/{quote(name, safe='')}/volumes/"]:
        assert api.get(url).status_code < 500
