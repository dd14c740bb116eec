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


@pytest.mark.django_db
def test_the_api_root_links_the_docs_schema_and_workspaces(client_for, client, cast):
    anonymous = client.get("/api/")
    assert anonymous.status_code in (401, 403) and anonymous.json()["error"]
    index = client_for("member").get("/api/")
    assert index.status_code == 200
    assert index.json()["docs"].endswith("/api/docs/") and index.json()["workspaces"].endswith("/api/workspaces/")


def test_the_public_api_has_readable_tags_listed_before_the_agent_endpoints():
    import json

    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    schema = json.loads(out.getvalue())
    names = [tag["name"] for tag in schema["tags"]]
    assert names[0] == "workspaces" and names[-1] == "agent" and "w" not in names
    used = {tag for item in schema["paths"].values() for op in item.values() if isinstance(op, dict)
            for tag in op["tags"]}
    assert used <= set(names) and {"volumes", "files", "jobs", "history", "shares", "storages"} <= used
    assert schema["paths"]["/api/w/{ws}/volumes/{name}/files/{path}"]["get"]["tags"] == ["files"]


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["limit=null", "offset=null", "limit=0", "limit=1001", "offset=-1", "limit=1.5",
                                   "offset=%EF%BC%91", "offset=1e3"])
def test_malformed_or_out_of_range_pagination_is_refused_not_replaced_by_defaults(api, query):
    for url in ["/api/w/acme/jobs/", V + "history/", V + "files/"]:
        response = api.get(f"{url}?{query}")
        assert response.status_code == 400, (url, query, response.status_code)
        assert "must be a whole number" in response.json()["detail"]
    assert api.get("/api/w/acme/jobs/?limit=1000&offset=0").status_code == 200


@pytest.mark.django_db
def test_the_schema_states_the_volume_name_and_script_rules_the_server_enforces(api):
    import json

    schema = json.loads(api.get("/api/schema/?format=json").content)["components"]["schemas"]
    name = schema["VolumeCreate"]["properties"]["name"]
    assert (name["minLength"], name["maxLength"]) == (2, 255) and name["pattern"].startswith("^[A-Za-z0-9]")
    assert schema["JobCreate"]["properties"]["content"]["minLength"] == 1
    assert api.post("/api/w/acme/volumes/", {"name": "x"}, format="json").status_code == 400
    assert api.post("/api/w/acme/jobs/", {"language": "python", "content": ""}, format="json").status_code == 400


@pytest.mark.django_db
def test_the_schema_lets_a_new_folder_end_with_a_slash_as_the_server_does(api, volume):
    """Schemathesis found it: a folder path 'a/b/' is made (201) while the schema's pattern refused it."""
    import json
    import re

    schema = json.loads(api.get("/api/schema/?format=json").content)["components"]["schemas"]
    folder_pattern = schema["FolderCreate"]["properties"]["path"]["pattern"]
    file_pattern = schema["Move"]["properties"]["src"]["pattern"]
    assert re.search(folder_pattern, "reports/2024/") and not re.search(file_pattern, "reports/2024/")
    assert not any(re.search(folder_pattern, p) for p in ("/", "a//", "../", "a/./", "/a/"))
    assert api.post(f"/api/w/acme/volumes/{volume.name}/folders/", {"path": "reports/2024/"},
                    format="json").status_code == 201
