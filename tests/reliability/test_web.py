"""Web security: CSRF on every unsafe route (enumerated from the URL resolver), the token in htmx
headers, escaping of every rendered name, headers of raw downloads, cross-workspace IDOR on every id,
`check --deploy`, and Schemathesis against /api/schema/.

Card figures (suite "web"): routes x methods refused without a CSRF token, pages with the htmx token,
pages checked for XSS and unescaped payloads, IDOR requests and leaks, schemathesis calls and 5xx.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.utils.http import urlencode

from tests.engine.helpers import ROOT
from tests.reliability.hostile_cases import sha
from tests.reliability.report import figure
from volumes.engine import leases
from volumes.models import Job, ObjectStorage, Volume, Workspace
from volumes.permissions import set_share
from volumes.services import files
from volumes.services.jobs import job_log_append, job_submit
from volumes.services.accounts import token_create
from volumes.services.volumes import volume_create, volume_delete
from volumes.services.workspaces import workspace_ensure

SUITE = "web"
UNSAFE = ["POST", "PUT", "PATCH", "DELETE"]
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
RAW_PAYLOADS = ["<script>alert(1)", "<img src=x onerror"]
ESCAPED = ["&lt;script&gt;alert(1)", "&lt;img src=x onerror"]


@pytest.fixture(autouse=True)
def no_celery(monkeypatch):
    from volumes import tasks

    monkeypatch.setattr(tasks.run_job, "delay", lambda *a, **k: None)


@pytest.fixture
def acme(workspace, cast, volume):
    """Workspace acme with a volume of two generations, a job, and its storage."""
    files.file_put(volume, "a.txt", io.BytesIO(b"hello"), user=cast["owner"])
    files.file_put(volume, "pic.svg", io.BytesIO(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), user=cast["owner"])
    job = job_submit(workspace, cast["admin"], "python", "# volume: training-data data\ndef main():\n    pass\n",
                     enqueue=False)
    volume.refresh_from_db()
    return {"ws": workspace, "volume": volume, "job": job, "storage": workspace.volume_storage}


# CSRF on every unsafe route ---------------------------------------------------------------------

def all_routes(resolver=None, prefix=""):
    """(route text, callback) of every URL pattern, recursively."""
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            yield from all_routes(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def sample_url(route: str, samples: dict) -> str:
    """A URL for a route: each <converter:name> or (?P<name>...) gets a sample value."""
    def route_value(match):
        converter, name = match.group(1) or "str", match.group(2)
        return str(samples.get(name, "1" if converter == "int" else "x"))

    def regex_value(match):
        name, body = match.group(1), match.group(2)
        if name in samples:
            return str(samples[name])
        return body.split("|")[0] if re.fullmatch(r"[\w|]+", body) else "x"

    url = re.sub(r"\(\?P<(\w+)>([^)]*)\)", regex_value, route)
    url = re.sub(r"<(?:(\w+):)?(\w+)>", route_value, url)
    return "/" + url.replace("^", "").replace("$", "")


def route_samples(acme) -> dict:
    return {"ws": "acme", "ws_id": "acme", "name": "training-data", "path": "a.txt", "job_id": acme["job"].pk,
            "generation": 1, "gen": 1, "pk": acme["storage"].pk, "digest": sha(b"hello")}


@pytest.mark.django_db
def test_every_unsafe_route_refuses_a_session_request_without_a_csrf_token(acme, cast):
    cast["admin"].is_staff = cast["admin"].is_superuser = True
    cast["admin"].save()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(cast["admin"])
    strict.get("/w/acme/assets/volumes/")  # the browser has its CSRF cookie, the forged request lacks the token
    assert "csrftoken" in strict.cookies
    samples = route_samples(acme)
    generation = acme["volume"].generation
    refused, wrong = 0, []
    routes = list(all_routes())
    for route, callback in routes:
        url = sample_url(route, samples)
        try:
            match = resolve(url.split("?")[0])
        except Resolver404:
            match = None
        assert match is not None and match.func is callback, f"no sample URL for route {route!r} ({url}); add a sample"
        for method in UNSAFE:
            response = strict.generic(method, url, b"name=sneaky&path=x&confirm_name=training-data",
                                      content_type="application/x-www-form-urlencoded")
            if response.status_code == 403 and b"CSRF" not in response.content:
                # Refused, but the page does not say why: the same request with the token must pass CSRF.
                retry = strict.generic(method, url, b"", HTTP_X_CSRFTOKEN=strict.cookies["csrftoken"].value)
                response.status_code = 403 if retry.status_code != 403 else 0
            if response.status_code == 403:
                refused += 1
            else:
                wrong.append((method, url, response.status_code, response.content[:120]))
    total = len(routes) * len(UNSAFE)
    figure(SUITE, "unsafe route x method refused without a CSRF token", refused, unit=f"of {total}",
           target="all", ok=refused == total)
    assert not wrong, wrong
    assert Volume.objects.get(pk=acme["volume"].pk).generation == generation
    assert not Volume.objects.filter(name="sneaky").exists()


@pytest.mark.django_db
def test_every_page_gives_htmx_the_csrf_token_and_the_token_works(acme, cast):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(cast["admin"])
    samples = route_samples(acme)
    pages, missing = 0, []
    for route, _ in all_routes():
        if route.startswith(("api/", "admin/", "login", "logout")):
            continue
        response = strict.get(sample_url(route, samples))
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        html = response.content.decode()
        if "<body" not in html:
            continue  # an htmx fragment: it lives inside a page that has the header
        pages += 1
        found = re.search(r"""<body hx-headers='\{"X-CSRFToken": "([A-Za-z0-9]+)"\}'>""", html)
        if not found:
            missing.append(route)
            continue
        token = found.group(1)
    figure(SUITE, "full pages with the CSRF token in hx-headers", pages - len(missing), unit=f"of {pages}",
           target="all", ok=not missing and pages >= 10)
    assert not missing and pages >= 10, (missing, pages)
    response = strict.post("/w/acme/assets/volumes/new/", {"name": "made-by-htmx"}, HTTP_HX_REQUEST="true",
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200 and Volume.objects.filter(name="made-by-htmx").exists()


# XSS ---------------------------------------------------------------------------------------------

@pytest.fixture
def hostile_names(acme, cast, tmp_path):
    """Markup in every name the dashboard renders."""
    ws, volume = acme["ws"], acme["volume"]
    Workspace.objects.filter(pk=ws.pk).update(name="Acme " + IMG)
    for path in [IMG + ".txt", IMG + "/inner.txt", "s" + SCRIPT + ".txt"]:
        files.file_put(volume, path, io.BytesIO(SCRIPT.encode()), user=cast["owner"])
    user = get_user_model().objects.create(username=SCRIPT)
    ws.memberships.create(user=user, role="member")
    group = Group.objects.create(name=IMG)
    cast["member"].groups.add(group)
    volume.refresh_from_db()
    set_share(volume, user, "read")
    set_share(volume, group, "write")
    ObjectStorage.objects.create(workspace=ws, name=SCRIPT, kind="filesystem",
                                 config={"root": str(tmp_path / IMG), "prefix": SCRIPT})
    done = Job.objects.create(workspace=ws, user=cast["admin"], language="python", content=SCRIPT,
                              args={"a": SCRIPT}, status="success",
                              result={"r": SCRIPT, IMG: IMG}, worker=IMG)
    job_log_append(done.pk, SCRIPT + "\n" + IMG + "\n")
    failed = Job.objects.create(workspace=ws, user=cast["admin"], language="python", content="x", status="failure",
                                error=SCRIPT + IMG, worker=SCRIPT)
    job_log_append(failed.pk, IMG)
    lease = leases.acquire(volume.pk, IMG, wait=0)
    yield {"done": done, "failed": failed}
    leases.release(lease)


@pytest.mark.django_db
def test_markup_in_every_rendered_name_comes_back_escaped(acme, hostile_names, as_admin):
    v = "/w/acme/volumes/training-data/"
    gen = Volume.objects.get(pk=acme["volume"].pk).generation
    quoted_img = "%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"
    pages = {
        "volume list": ("/w/acme/assets/volumes/", {}),
        "volume rows (htmx)": ("/w/acme/assets/volumes/?q=", {"HTTP_HX_REQUEST": "true"}),
        "lease badges": ("/w/acme/assets/volumes/leases/", {}),
        "file browser": (v, {}),
        "folder named with markup": (v + f"?path={quoted_img}", {}),
        "history": (v + "history/", {}),
        "diff": (v + f"history/{gen}/", {}),
        "preview dialog": (v + f"files/preview/?path={quoted_img}.txt", {"HTTP_HX_REQUEST": "true"}),
        "move dialog": (v + f"files/move/?path={quoted_img}.txt", {}),
        "delete dialog": (v + f"files/delete/?path={quoted_img}", {}),
        "share dialog": (v + "shares/", {}),
        "volume delete dialog": (v + "delete/", {}),
        "principal suggestions": ("/w/acme/principals/?who=", {}),
        "storage settings": ("/w/acme/settings/storage/", {}),
        "jobs": ("/w/acme/jobs/", {}),
        "job detail (result)": (f"/w/acme/jobs/{hostile_names['done'].pk}/", {}),
        "job detail (error)": (f"/w/acme/jobs/{hostile_names['failed'].pk}/", {}),
        "job live fragment": (f"/w/acme/jobs/{hostile_names['done'].pk}/live/", {}),
        "error page naming a volume": ("/w/acme/volumes/%3Cscript%3Ealert(1)%3C%20script%3E/", {}),
        "browsable API of a job": (f"/api/w/acme/jobs/{hostile_names['done'].pk}/", {"HTTP_ACCEPT": "text/html"}),
    }
    unescaped, not_rendered = [], []
    for name, (url, headers) in pages.items():
        response = as_admin.get(url, **headers)
        html = response.content.decode()
        if any(raw in html for raw in RAW_PAYLOADS):
            unescaped.append((name, response.status_code))
        if not any(e in html for e in ESCAPED) or response.status_code >= 500:
            not_rendered.append((name, response.status_code))
    figure(SUITE, "pages rendering markup names, checked for XSS", len(pages) - len(not_rendered),
           unit=f"of {len(pages)}")
    figure(SUITE, "unescaped payloads", len(unescaped), target="0", ok=not unescaped)
    assert not unescaped, unescaped
    assert not not_rendered, f"these pages did not show the escaped payload at all: {not_rendered}"


@pytest.fixture
def as_admin(cast):
    client = Client()
    client.force_login(cast["admin"])
    return client


# Raw downloads ------------------------------------------------------------------------------------

def token_client(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.mark.django_db
def test_raw_downloads_are_attachments_never_sniffed_and_sandboxed(acme, cast, as_admin):
    api = token_client(cast["admin"])
    v = "/w/acme/volumes/training-data/"
    attachments = {
        "API download": api.get("/api/w/acme/volumes/training-data/files/pic.svg"),
        "API range download": api.get("/api/w/acme/volumes/training-data/files/pic.svg", HTTP_RANGE="bytes=0-3"),
        "API HEAD": api.head("/api/w/acme/volumes/training-data/files/pic.svg"),
        "dashboard download": as_admin.get(v + "files/download/?path=pic.svg"),
    }
    inline = {"dashboard raw image for the preview": as_admin.get(v + "files/raw/?path=pic.svg")}
    pages = {"dashboard preview dialog": as_admin.get(v + "files/preview/?path=a.txt")}
    problems = []
    for name, response in {**attachments, **inline, **pages}.items():
        if response.status_code not in (200, 206):
            problems.append((name, "status", response.status_code))
        if response.get("X-Content-Type-Options") != "nosniff":
            problems.append((name, "X-Content-Type-Options", response.get("X-Content-Type-Options")))
        if name not in pages and "sandbox" not in response.get("Content-Security-Policy", ""):
            problems.append((name, "Content-Security-Policy", response.get("Content-Security-Policy")))
        if name in attachments and not response.get("Content-Disposition", "").startswith("attachment"):
            problems.append((name, "Content-Disposition", response.get("Content-Disposition")))
    figure(SUITE, "raw download responses with attachment/nosniff/sandbox", 6 - len({p[0] for p in problems}),
           unit="of 6", target="all", ok=not problems)
    assert not problems, problems


# Cross-workspace IDOR --------------------------------------------------------------------------------

@pytest.fixture
def beta(acme, tmp_path):
    """Workspace beta: bob is its admin (and may run agents there), with its own volume and a claimed job."""
    (tmp_path / "storage-beta").mkdir()
    ws = workspace_ensure("beta", name="Beta", admins=["bob"], storage_url=f"file://{tmp_path / 'storage-beta'}")
    bob = get_user_model().objects.get(username="bob")
    volume = volume_create(ws, "beta-data", owner=bob)
    files.file_put(volume, "b.txt", io.BytesIO(b"beta"), user=bob)
    job_submit(ws, bob, "python", "# volume: beta-data data\ndef main():\n    pass\n", enqueue=False)
    api = token_client(bob)
    spec = api.post("/api/w/beta/agent/claim/", {"worker": "bob"}, format="json").json()
    session = Client()
    session.force_login(bob)
    return {"ws": ws, "bob": bob, "api": api, "session": session, "spec": spec}


# Routes the sweep leaves out, and why; every other route with a parameter is swept.
IDOR_SKIPPED = {
    "admin/": "Django's admin: staff only (bob is not staff), with its own permissions",
    "set-password/": "a signed invite link checked by Django's PasswordResetConfirmView, not a workspace object",
}
MADE_UP = {"ws": "nowhere", "ws_id": "nowhere", "name": "no-such-volume", "job_id": 999999, "pk": 999999,
           "user_id": 999999, "token_id": 999999}
JSON_BODY = {"name": "sneaky", "path": "a.txt", "paths": ["a.txt"], "src": "a.txt", "dst": "moved.txt",
             "confirm_name": "training-data", "user": "bob", "access": "write", "role": "admin", "holder": "bob",
             "worker": "bob", "wait": 0, "max_size_bytes": 1, "max_size": "1", "action": "delete", "lines": ["x"],
             "status": "failed", "content": "x"}


def route_params(route: str) -> list[str]:
    return re.findall(r"<(?:\w+:)?(\w+)>", route) + re.findall(r"\(\?P<(\w+)>", route)


def idor_targets(acme, beta) -> list[tuple[str, str, str]]:
    """(route, URL with acme's ids, the same URL with made-up ids) for every route that takes an id:
    acme's objects through acme's URLs, and acme's ids through beta's URLs, where bob is admin."""
    theirs = {"ws": "acme", "ws_id": "acme", "name": "training-data", "path": "a.txt", "job_id": acme["job"].pk,
              "generation": 1, "gen": 1, "pk": acme["storage"].pk, "digest": sha(b"hello"),
              "user_id": acme["member"].pk, "token_id": acme["token"].pk}
    targets = []
    for route, _ in all_routes():
        params = route_params(route)
        if not params or any(route.startswith(prefix) for prefix in IDOR_SKIPPED):
            continue
        for action in (["restore", "purge"] if "action" in params else [""]):
            samples = {**theirs, "action": action}
            if "trash/" in route:
                samples["name"] = acme["trashed"].name
            variants = [samples]
            if params[0] in ("ws", "ws_id") and len(params) > 1:
                variants.append({**samples, "ws": "beta", "ws_id": "beta"})
            for variant in variants:
                made_up = {**variant, **MADE_UP}
                if variant.get("ws") == "beta":
                    made_up.update(ws="beta", ws_id="beta")
                targets.append((route, sample_url(route, variant), sample_url(route, made_up)))
    return targets


def idor_request(client, method: str, url: str, key: dict):
    """A request that would change acme's data if it got through: JSON for the API, a form for pages."""
    url += "?path=a.txt&paths=a.txt"
    if not url.startswith("/api/"):
        return client.generic(method, url, urlencode(JSON_BODY, doseq=True),
                              content_type="application/x-www-form-urlencoded", **key)
    return client.generic(method, url, json.dumps(JSON_BODY), content_type="application/json", **key)


def db_snapshot() -> dict:
    """Every row of every model but the sessions."""
    return {model._meta.label_lower: list(model._default_manager.order_by("pk").values_list())
            for model in apps.get_models() if model._meta.label_lower != "sessions.session"}


def storage_snapshot(root) -> dict:
    return {str(path): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.django_db
def test_a_member_of_another_workspace_gets_404_for_every_id(acme, beta, cast, tmp_path):
    """Hand-picked requests, then every route with an id (from the URL resolver) by every method, with bob's
    session and bob's token. A sweep request passes with 404, or with the answer a made-up id gets when that
    says nothing about the id: 405 for a method the route lacks, the login page for a token on a page."""
    api, session, spec = beta["api"], beta["session"], beta["spec"]
    trashed = volume_create(acme["ws"], "old-data", owner=cast["owner"])
    volume_delete(trashed, user=cast["owner"])
    acme = {**acme, "trashed": trashed, "member": cast["member"], "token": token_create(cast["admin"], "ci")[0]}
    job, storage, hello = acme["job"].pk, acme["storage"].pk, sha(b"hello")
    v, d = "/api/w/acme/volumes/training-data/", "/w/acme/volumes/training-data/"
    key = {"HTTP_X_JOB_KEY": spec["job_key"]}
    mine = f"/api/w/beta/agent/jobs/{spec['id']}/volumes/beta-data/"
    token = api.post(mine + "lease/", {"holder": "bob", "wait": 0}, format="json", **key).json()["token"]
    requests = {
        # acme's objects through acme's URLs
        "API volume": lambda: api.get(v), "API volume delete": lambda: api.delete(v),
        "API file": lambda: api.get(v + "files/a.txt"), "API file list": lambda: api.get(v + "files/"),
        "API file put": lambda: api.generic("PUT", v + "files/x", b"x", content_type="application/octet-stream"),
        "API file delete": lambda: api.delete(v + "files/a.txt"),
        "API mkdir": lambda: api.post(v + "folders/", {"path": "x"}, format="json"),
        "API move": lambda: api.post(v + "move/", {"src": "a.txt", "dst": "b"}, format="json"),
        "API shares": lambda: api.get(v + "shares/"),
        "API share grant": lambda: api.post(v + "shares/", {"user": "bob", "access": "write"}, format="json"),
        "API history": lambda: api.get(v + "history/"),
        "API restore": lambda: api.post(v + "history/1/restore/"),
        "API jobs": lambda: api.get("/api/w/acme/jobs/"), "API job": lambda: api.get(f"/api/w/acme/jobs/{job}/"),
        "API job cancel": lambda: api.post(f"/api/w/acme/jobs/{job}/cancel/"),
        "agent claim": lambda: api.post("/api/w/acme/agent/claim/", {"worker": "bob"}, format="json"),
        "agent lease": lambda: api.post(f"/api/w/acme/agent/jobs/{job}/volumes/training-data/lease/",
                                        {"holder": "bob"}, format="json", **key),
        # acme's ids through beta's URLs, where bob is admin
        "job id under beta": lambda: api.get(f"/api/w/beta/jobs/{job}/"),
        "job cancel under beta": lambda: api.post(f"/api/w/beta/jobs/{job}/cancel/"),
        "agent job id under beta": lambda: api.post(f"/api/w/beta/agent/jobs/{job}/heartbeat/", **key),
        "volume name under beta": lambda: api.get("/api/w/beta/volumes/training-data/history/"),
        "restore under beta": lambda: api.post("/api/w/beta/volumes/training-data/history/1/restore/"),
        "acme blob via bob's mount": lambda: api.get(mine + f"blobs/{hello}?token={token}", **key),
        # the dashboard
        "page volumes": lambda: session.get("/w/acme/assets/volumes/"),
        "page volume": lambda: session.get(d), "page download": lambda: session.get(d + "files/download/?path=a.txt"),
        "page preview": lambda: session.get(d + "files/preview/?path=a.txt"),
        "page shares": lambda: session.get(d + "shares/"), "page history": lambda: session.get(d + "history/"),
        "page diff": lambda: session.get(d + "history/1/"),
        "page restore": lambda: session.post(d + "history/1/restore/"),
        "page delete": lambda: session.post(d + "delete/", {"confirm_name": "training-data"}),
        "page upload": lambda: session.post(d + "files/upload/?path=x", b"x", content_type="application/octet-stream"),
        "page jobs": lambda: session.get("/w/acme/jobs/"), "page job": lambda: session.get(f"/w/acme/jobs/{job}/"),
        "page job cancel": lambda: session.post(f"/w/acme/jobs/{job}/cancel/"),
        "page storage": lambda: session.get(f"/w/acme/settings/storage/{storage}/"),
        "page job under beta": lambda: session.get(f"/w/beta/jobs/{job}/"),
        "page job live under beta": lambda: session.get(f"/w/beta/jobs/{job}/live/"),
        "page job cancel under beta": lambda: session.post(f"/w/beta/jobs/{job}/cancel/"),
        "page storage under beta": lambda: session.get(f"/w/beta/settings/storage/{storage}/"),
        "page storage delete under beta": lambda: session.post(f"/w/beta/settings/storage/{storage}/delete/"),
        "page storage test under beta": lambda: session.post(f"/w/beta/settings/storage/{storage}/test/"),
    }
    rows, stored = db_snapshot(), storage_snapshot(tmp_path)
    wrong = {name: r.status_code for name, r in ((n, call()) for n, call in requests.items()) if r.status_code != 404}
    for route, url, made_up in idor_targets(acme, beta):
        for method in ["GET", *UNSAFE]:
            for who, client in (("session", session), ("token", api)):
                response = idor_request(client, method, url, key)
                requests[f"{who} {method} {url}"] = route
                if response.status_code == 404:
                    continue
                twin = idor_request(client, method, made_up, key)
                same = [(r.status_code, r.get("Location", "").split("?")[0]) for r in (response, twin)]
                says_nothing = response.status_code == 405 or (
                    who == "token" and response.status_code == 302 and response["Location"].startswith("/login/"))
                if not (same[0] == same[1] and says_nothing):
                    wrong[f"{who} {method} {url} ({route})"] = (response.status_code, twin.status_code,
                                                                 response.content[:100])
    # Blob hashes: asking beta's mount about acme's blob reveals nothing, and a manifest naming it is refused.
    missing = api.post(mine + "blobs/missing/", {"token": token, "hashes": [hello]}, format="json", **key).json()
    entry = {"path": "stolen.txt", "type": "file", "size": 5, "hash": hello, "mode": 0o644, "mtime_ns": 0,
             "target": "", "gen": 2}
    commit = api.post(mine + "commit/", {"token": token, "parent": 1, "manifest": {
        "format": 1, "generation": 2, "entries": [entry]}}, format="json", **key)
    leaks = len(wrong) + (missing.get("missing") != [hello]) + (commit.status_code != 400)
    figure(SUITE, "cross-workspace requests answered 404", len(requests) - len(wrong), unit=f"of {len(requests)}",
           target="all", ok=not wrong)
    figure(SUITE, "cross-workspace leaks", leaks, target="0", ok=leaks == 0)
    assert not wrong, "\n".join(f"{name}: {answer}" for name, answer in wrong.items())
    assert missing == {"missing": [hello]} and commit.status_code == 400, (missing, commit.content)
    acme["volume"].refresh_from_db()
    assert acme["volume"].generation == Volume.objects.get(pk=acme["volume"].pk).generation
    assert Job.objects.get(pk=job).status == "queued" and not Job.objects.get(pk=job).cancel_requested
    changed = {label for label, before in rows.items() if db_snapshot()[label] != before}
    assert not changed, changed
    assert storage_snapshot(tmp_path) == stored


# Deployment checks ------------------------------------------------------------------------------------

def test_check_deploy_passes_with_production_settings(tmp_path):
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "volumes.example.com",
           "DJANGO_SETTINGS_MODULE": "volumes_site.settings", "VOLUMES_DATA_DIR": str(tmp_path)}
    env.pop("SECURE_SSL_REDIRECT", None)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests for this process only
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    figure(SUITE, "manage.py check --deploy --fail-level WARNING exit code", done.returncode, target="0",
           ok=done.returncode == 0)
    assert done.returncode == 0, done.stdout + done.stderr


# Schemathesis -------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_schemathesis_finds_no_server_errors_and_responses_match_the_schema(acme, cast):
    import schemathesis
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from volumes_site.wsgi import application

    # Like Django's test client: the app must not close the test's database connection after each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        calls, errors, mismatches = _schemathesis_run(schemathesis.openapi.from_wsgi("/api/schema/", application),
                                                      acme, cast)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    figure(SUITE, "schemathesis calls", calls)
    figure(SUITE, "schemathesis 5xx", len(errors), target="0", ok=not errors)
    figure(SUITE, "schemathesis schema mismatches", len(mismatches), target="0", ok=not mismatches)
    assert calls > 50
    assert not errors, "\n".join(errors)
    assert not mismatches, "\n".join(sorted(set(mismatches)))


def _schemathesis_run(schema, acme, cast):
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

    headers = {"Authorization": "Token " + token_client(cast["admin"])._credentials["HTTP_AUTHORIZATION"][6:]}
    fixed = {"ws": "acme", "name": "training-data", "job_id": acme["job"].pk, "generation": 1}
    calls, errors, mismatches = 0, [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        strategy = operation.as_strategy(path_parameters={k: v for k, v in fixed.items() if k in names})

        @settings(max_examples=6, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case):
            nonlocal calls
            response = case.call(headers=headers)
            calls += 1
            for check, found in ((not_a_server_error, errors), (response_schema_conformance, mismatches),
                                 (content_type_conformance, mismatches)):
                try:
                    case.validate_response(response, checks=[check], headers=headers)
                except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected and reported below
                    found.append(f"{operation.label}: {str(exc)[:300]}")

        run()
    return calls, errors, mismatches
