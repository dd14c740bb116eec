"""The README cannot drift from the code: every storage URL field and every setting is documented."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from urllib.parse import quote

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + len(title))
    return README[start:end if end != -1 else None]


def test_every_storage_url_field_is_documented_with_an_example_per_backend():
    from volumes.storage.factory import _URL_PARAMS, parse_storage_url

    section = _section("### Storage URLs")
    for kind, params in _URL_PARAMS.items():
        for param in params:
            assert f"`{param}`" in section, f"README's storage URL table lacks {kind} field {param!r}"
    kinds = set()
    for example in re.findall(r"`((?:file|s3|az|gs)://[^`]+)`", section):
        try:
            kinds.add(parse_storage_url(example)[0])
        except ValueError as exc:  # the key file of the GCS example is elided
            assert "credentials_json" in str(exc) and example.startswith("gs://"), (example, exc)
            kinds.add("gcs")
    assert kinds == {"filesystem", "s3", "azure", "gcs"}


def test_a_service_account_key_fits_into_a_gs_url():
    from volumes.storage.factory import parse_storage_url

    key = json.dumps({"type": "service_account", "project_id": "p", "token_uri": "https://oauth2.googleapis.com/token"})
    kind, config = parse_storage_url(f"gs://bucket/vols?credentials_json={quote(key, safe='')}")
    assert kind == "gcs" and json.loads(config["credentials_json"]) == json.loads(key) and config["prefix"] == "vols"


ROOT = Path(__file__).resolve().parents[1]
# The process environment of any Unix program, not settings of ours.
NOT_SETTINGS = {"PATH", "LANG", "TZ", "HOME", "DJANGO_SETTINGS_MODULE"}


def settings_read_by_the_code() -> set[str]:
    """Every environment variable that volumes/, volumes_site/ and scripts/ read."""
    names: set[str] = set()
    python = [*(ROOT / "volumes").rglob("*.py"), *(ROOT / "volumes_site").rglob("*.py"), ROOT / "manage.py"]
    patterns = [
        r"\benv(?:\.(?:str|bool|int|float|list|tuple|dict|json|url|db_url|cache_url|path))?\(\s*\"([A-Z][A-Z0-9_]+)\"",
        r"os\.environ(?:\.get|\.setdefault)?\s*[\(\[]\s*\"([A-Z][A-Z0-9_]+)\"",
        r"os\.getenv\(\s*\"([A-Z][A-Z0-9_]+)\"",
        r"^ENV = \"([A-Z][A-Z0-9_]+)\"",
    ]
    for path in python:
        text = path.read_text()
        for pattern in patterns:
            names.update(re.findall(pattern, text, flags=re.M))
    for path in (ROOT / "scripts").glob("*.sh"):
        names.update(re.findall(r"\$\{([A-Z][A-Z0-9_]+):-", path.read_text()))
    return names - NOT_SETTINGS


def settings_rows_of_the_readme_table() -> list[list[str]]:
    """The setting names of each row of README's settings table (a row may name several)."""
    return [re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])
            for line in _section("## Settings").splitlines() if line.startswith("| `")]


def settings_in_the_readme_table() -> set[str]:
    return {name for row in settings_rows_of_the_readme_table() for name in row}


def test_the_readme_settings_table_lists_every_setting_the_code_reads():
    code, table = settings_read_by_the_code(), settings_in_the_readme_table()
    assert {"VOLUMES_LEASE_TTL", "SECRET_KEY", "VOLUMES_TOKEN", "SECURE_SSL_REDIRECT"} <= code  # the scan works
    assert not code - table, f"read by the code but not in README's settings table: {sorted(code - table)}"
    assert not table - code, f"in README's settings table but read nowhere: {sorted(table - code)}"


def test_each_setting_has_exactly_one_row_in_the_readme_settings_table():
    rows = settings_rows_of_the_readme_table()
    assert len(rows) > 20  # the parse works
    repeated = sorted(name for name, n in Counter(name for row in rows for name in set(row)).items() if n > 1)
    assert not repeated, f"in more than one row of README's settings table: {repeated}"


def test_where_the_code_lives_names_only_folders_and_modules_that_exist():
    root = Path(__file__).resolve().parents[1]
    rows = [line.split("|")[1:3] for line in _section("## Where the code lives").splitlines()
            if line.startswith("| `")]
    assert rows
    for places, holds in rows:
        folders = re.findall(r"`([\w/.]+)`", places)
        for place in folders:
            assert (root / place).exists(), f"README's 'Where the code lives' names {place}, which is gone"
        for module in re.findall(r"`(\w+\.py)`", holds):
            assert any((root / folder / module).exists() for folder in folders if folder.endswith("/")), \
                f"README's 'Where the code lives' names {module} under {', '.join(folders)}, where it is not"
